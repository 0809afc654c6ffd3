"""Sign-in state every server process must see: failed sign-ins (counted for the rate
limit) and revoked tokens (signed-out sessions).

Keyword-only, session first, like `repository`. Keys and digests are made by the caller
(`medloop.web.security.LoginLimiter`, `medloop.workflows.accounts.revoke_token`); times
are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, exists, select, text
from sqlalchemy.orm import Session

from medloop.store.models import LoginFailure, RevokedToken

#: PostgreSQL advisory locks `(LOGIN_LOCK_SPACE, hashtext(key))` order the attempts that
#: share a key (any fixed number: "mllg"); the two-key form never meets the one-key locks.
LOGIN_LOCK_SPACE = 0x6D6C6C67


def take_turn(session: Session, *, key: str) -> None:
    """Let transactions that count `key`'s failures take turns until they end.

    Without it, two READ COMMITTED transactions on PostgreSQL that each record an attempt
    and then count could both miss the other's uncommitted row, and both pass the limit.
    SQLite lets one writer in at a time already: the caller's first write waits there."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": LOGIN_LOCK_SPACE, "key": key},
        )


def record_failure(session: Session, *, key: str, at: float) -> int:
    """Store one failure of `key` at `at`; returns its id (to take it back)."""
    failure = LoginFailure(key=key, failed_at=at)
    session.add(failure)
    session.flush()
    return failure.id


def remove_failures(session: Session, *, ids: Collection[int]) -> None:
    """Forget the failures with these ids (attempts that turned out not to fail)."""
    if ids:
        session.execute(delete(LoginFailure).where(LoginFailure.id.in_(list(ids))))


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
