"""Failed sign-ins, counted in the database so that every server process sees them.

Keyword-only, session first, like `repository`. Keys are digests made by the caller
(`medloop.web.security.LoginLimiter`); times are Unix seconds.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from medloop.store.models import LoginFailure


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
