"""Repository functions for review flags: flag an item, read open flags, resolve them.

Keyword-only, session first, like `repository`. At most one flag per item is open: the
`review_flags (item_id, open)` unique index refuses a second one, so two doctors
flagging the same item at once cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from medloop.store.db import chunks
from medloop.store.models import ReviewFlag, User, utcnow


@dataclass(frozen=True)
class OpenFlag:
    """An item's open flag: why, by whom (username), when."""

    flag_id: int
    item_id: int
    reason: str
    flagged_by: str
    flagged_at: datetime


def add_flag(
    session: Session, *, project_id: int, item_id: int, reason: str, flagged_by_id: int
) -> ReviewFlag:
    """Insert an open flag; raises IntegrityError (at flush) when the item has one."""
    flag = ReviewFlag(
        project_id=project_id,
        item_id=item_id,
        reason=reason,
        flagged_by_id=flagged_by_id,
        open=True,
    )
    session.add(flag)
    session.flush()
    return flag


def open_flags_for(session: Session, *, item_ids: Collection[int]) -> dict[int, OpenFlag]:
    """The open flag of each given item that has one."""
    found: dict[int, OpenFlag] = {}
    for batch in chunks(item_ids):
        rows = session.execute(
            select(
                ReviewFlag.id,
                ReviewFlag.item_id,
                ReviewFlag.reason,
                User.username,
                ReviewFlag.created_at,
            )
            .join(User, User.id == ReviewFlag.flagged_by_id)
            .where(ReviewFlag.item_id.in_(batch), ReviewFlag.open.is_(True))
        )
        for flag_id, item, reason, by, at in rows:
            found[int(item)] = OpenFlag(
                flag_id=int(flag_id), item_id=int(item), reason=reason, flagged_by=by, flagged_at=at
            )
    return found


def open_flag_items(session: Session) -> set[int]:
    """The items with an open flag, in every project (flags are few: no id list)."""
    query = select(ReviewFlag.item_id).where(ReviewFlag.open.is_(True))
    return {int(item) for item in session.scalars(query)}


def resolve_flags(session: Session, *, item_id: int, resolved_by_id: int | None) -> list[int]:
    """Close the item's open flag (if any); returns the ids of the flags closed."""
    closed = list(
        session.scalars(
            select(ReviewFlag.id).where(ReviewFlag.item_id == item_id, ReviewFlag.open.is_(True))
        )
    )
    if closed:
        session.execute(
            update(ReviewFlag)
            .where(ReviewFlag.id.in_(closed))
            .values(open=None, resolved_by_id=resolved_by_id, resolved_at=utcnow())
        )
    return closed
