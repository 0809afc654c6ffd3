"""Every moment a page shows goes through the `utc` filter (medloop.times.utc_text):
PostgreSQL hands stored moments back in its session's time zone, so a template that
formats a moment itself prints that zone's hour, and the pages say "UTC"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from medloop.web.rendering import templates

TEMPLATES = Path(templates.env.loader.searchpath[0])  # type: ignore[union-attr]


def test_no_template_formats_a_moment_itself() -> None:
    found = {
        f"{path.name}: {match}"
        for path in TEMPLATES.glob("*.html")
        for match in re.findall(r"[\w.]+\.strftime\([^)]*\)", path.read_text())
    }
    assert not found, "use {{ moment|utc }} instead"


def test_the_filter_says_the_moment_in_utc() -> None:
    berlin = datetime(2026, 12, 7, 15, 3, 12, tzinfo=timezone(timedelta(hours=2)))
    utc = templates.env.filters["utc"]
    assert utc(berlin) == "2026-12-07 13:03 UTC"
    assert utc(berlin, seconds=True) == "2026-12-07 13:03:12 UTC"
