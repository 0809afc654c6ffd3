"""Sign-in state every server process must see: failed sign-ins (counted for the rate
limit) and revoked tokens (signed-out sessions).

Keyword-only, session first, like `repository`. Keys and digests are made by the caller
(`medloop.web.security.LoginLimiter`, `medloop.workflows.accounts.revoke_token`); times
are Unix seconds.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from medloop.store.models import LoginFailure, RevokedToken


def record_failure(session: Session, *, key: str, at: float) -> None:
    session.add(LoginFailure(key=key, failed_at=at))


def failures_since(session: Session, *, key: str, since: float) -> list[float]:
    """Times of `key`'s failures after `since`, oldest first."""
    rows = session.scalars(
        select(LoginFailure.failed_at)
        .where(LoginFailure.key == key, LoginFailure.failed_at > since)
        .order_by(LoginFailure.failed_at)
    )
    return [float(t) for t in rows]


def clear_failures(session: Session, *, key: str) -> None:
    session.execute(delete(LoginFailure).where(LoginFailure.key == key))


def prune_failures(session: Session, *, before: float) -> int:
    """Forget every failure older than `before`; returns how many."""
    result = session.execute(delete(LoginFailure).where(LoginFailure.failed_at <= before))
    return int(getattr(result, "rowcount", 0) or 0)


def revoke(session: Session, *, digest: str, expires_at: float, now: float) -> None:
    """Refuse the token with `digest` from now until `expires_at` (idempotent); forgets
    revocations whose tokens have expired anyway."""
    session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
    if session.get(RevokedToken, digest) is None:
        session.add(RevokedToken(digest=digest, expires_at=expires_at))


def is_revoked(session: Session, *, digest: str) -> bool:
    return bool(session.scalar(select(exists().where(RevokedToken.digest == digest))))
