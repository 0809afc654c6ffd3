"""Progress callbacks of long workflows (the CLI draws them as Rich bars)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""Progress callback: (description, done, total). Text before the first ":" names the bar
("loop: round 2, training"), so one bar follows one piece of long work."""


def no_progress(_stage: str, _done: int, _total: int) -> None:
    """The callback of callers who show no progress."""
    return None
