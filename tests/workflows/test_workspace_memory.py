"""What a workspace keeps in memory: figures until their project changes, and the most
recently used of the objects that never change."""

from __future__ import annotations

from pathlib import Path

from medloop.config import Settings
from medloop.workflows import Workspace
from medloop.workflows.workspace import RECENT_LIMIT


def test_recent_objects_are_made_once_and_the_least_recently_used_go_first(
    tmp_path: Path,
) -> None:
    ws = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    try:
        made: list[int] = []

        def make(key: int) -> dict[str, int]:
            made.append(key)
            return {"key": key}

        first = ws.recent(0, lambda: make(0))
        assert ws.recent(0, lambda: make(0)) is first and made == [0]
        for key in range(1, RECENT_LIMIT):
            ws.recent(key, lambda key=key: make(key))
        ws.recent(0, lambda: make(0))  # used again: now the most recent
        ws.recent(RECENT_LIMIT, lambda: make(RECENT_LIMIT))  # one too many: 1 goes
        assert list(ws.recently_used) == [*range(2, RECENT_LIMIT), 0, RECENT_LIMIT]
        ws.recent(1, lambda: make(1))
        assert made == [*range(RECENT_LIMIT + 1), 1]  # only the forgotten one made again
        calls: list[int] = []
        state = ("answers", 1)
        assert ws.kept("figures", state, lambda: calls.append(1) or "a") == "a"
        assert ws.kept("figures", state, lambda: calls.append(1) or "b") == "a"
        assert ws.kept("figures", ("answers", 2), lambda: calls.append(1) or "c") == "c"
        assert calls == [1, 1]
    finally:
        ws.close()
