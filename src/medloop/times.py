"""Moments as medloop shows them: stored in UTC, shown in UTC with the zone said.

`iso_time` for JSON and tables (ISO 8601 to the second: "2026-12-07T14:03:12+00:00"),
`utc_text` for sentences and pages ("2026-12-07 14:03 UTC"). Both turn a moment to UTC
first: PostgreSQL hands back a stored moment in its session's time zone, which need not
be UTC (SQLite's, which keeps no zone, come back as UTC: `store.models.UTCDateTime`).

>>> from datetime import datetime, timedelta, timezone
>>> berlin = datetime(2026, 12, 7, 15, 3, 12, 500, tzinfo=timezone(timedelta(hours=1)))
>>> iso_time(berlin), utc_text(berlin), utc_text(berlin, seconds=True)
('2026-12-07T14:03:12+00:00', '2026-12-07 14:03 UTC', '2026-12-07 14:03:12 UTC')
"""

from __future__ import annotations

from datetime import UTC, datetime


def _utc(moment: datetime) -> datetime:
    """`moment` in UTC; one without a zone is taken as UTC already (as stored)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso_time(moment: datetime | None) -> str | None:
    """A moment as ISO 8601 in UTC to the second (None stays None), for tables and JSON."""
    return None if moment is None else _utc(moment).isoformat(timespec="seconds")


def utc_text(moment: datetime, *, seconds: bool = False) -> str:
    """A moment in UTC to the minute (or the second) with the zone said, for people:
    "2026-12-07 14:03 UTC"."""
    return f"{_utc(moment):%Y-%m-%d %H:%M{':%S' if seconds else ''}} UTC"
