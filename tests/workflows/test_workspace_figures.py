"""Figures served while they are recomputed (`Workspace.figures`): an outdated value at
once, one background recompute per key however many ask, failures logged and retried,
and never an older computation's value over a newer one. Background work is awaited with
events and `Workspace.settle`, never with sleeps."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medloop.config import Settings
from medloop.workflows import Workspace
from medloop.workflows.workspace import Kept


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.open(Settings(home=tmp_path / "home", secret_key="k"))
    yield workspace
    workspace.close()


class Gated:
    """A computation that says when it starts and finishes only when let through."""

    def __init__(self, value: str, state: Hashable) -> None:
        self.value, self.state = value, state
        self.started = threading.Event()
        self.go = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[Hashable, str]:
        with self._lock:
            self.calls += 1
        self.started.set()
        assert self.go.wait(timeout=60), "the test never let the computation through"
        return self.state, self.value


def done(value: str, state: Hashable) -> Callable[[], tuple[Hashable, str]]:
    return lambda: (state, value)


def test_an_outdated_value_comes_at_once_while_one_recompute_runs(ws: Workspace) -> None:
    first = ws.figures("key", 1, done("a", 1), fresh=False)  # nothing kept: computed now
    assert (first.value, first.state, first.updating) == ("a", 1, False)
    gated = Gated("b", 2)
    served = ws.figures("key", 2, gated, fresh=False)
    assert (served.value, served.state, served.updating) == ("a", 1, True)
    assert served.computed_at == first.computed_at
    assert gated.started.wait(timeout=60), "the recompute runs in the background"
    with ThreadPoolExecutor(16) as pool:  # many views while it runs
        views = list(pool.map(lambda _: ws.figures("key", 2, gated, fresh=False), range(64)))
    assert {(v.value, v.updating) for v in views} == {("a", True)}
    assert gated.calls == 1, "one recompute per key, however many views ask"
    gated.go.set()
    ws.settle()
    after = ws.figures("key", 2, gated, fresh=False)
    assert (after.value, after.state, after.updating) == ("b", 2, False)
    assert after.computed_at >= first.computed_at
    assert gated.calls == 1 and not ws.computing


def test_first_views_at_once_compute_it_once(ws: Workspace) -> None:
    gated = Gated("a", 1)
    with ThreadPoolExecutor(8) as pool:
        views = [pool.submit(ws.figures, "key", 1, gated, fresh=False) for _ in range(8)]
        assert gated.started.wait(timeout=60)
        gated.go.set()
        results: list[Kept[str]] = [v.result(timeout=60) for v in views]
    assert {(r.value, r.updating) for r in results} == {("a", False)}
    assert gated.calls == 1


def test_a_failed_recompute_is_logged_keeps_the_old_value_and_is_retried(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    ws.figures("key", 1, done("a", 1))
    calls: list[int] = []

    def broken() -> tuple[Hashable, str]:
        calls.append(1)
        raise RuntimeError("the database went away")

    with caplog.at_level(logging.ERROR, logger="medloop.workflows.workspace"):
        assert ws.figures("key", 2, broken, fresh=False).value == "a"
        ws.settle()
    (record,) = caplog.records
    assert "'key'" in record.getMessage() and record.exc_info is not None
    assert "the database went away" in str(record.exc_info[1])
    kept = ws.figures("key", 2, done("b", 2), fresh=False)
    assert (kept.value, kept.state, kept.updating) == ("a", 1, True), "the next view retries"
    ws.settle()
    assert ws.figures("key", 2, broken, fresh=False).value == "b"
    assert calls == [1]


def test_fresh_computes_now_and_an_older_computation_never_replaces_it(
    ws: Workspace,
) -> None:
    ws.figures("key", 1, done("a", 1))
    slow = Gated("b", 2)
    assert ws.figures("key", 2, slow, fresh=False).value == "a"
    assert slow.started.wait(timeout=60)
    now = ws.figures("key", 3, done("c", 3), fresh=True)  # while "b" is still computing
    assert (now.value, now.updating) == ("c", False)
    slow.go.set()
    ws.settle()
    assert ws.figures("key", 3, done("x", 3), fresh=False).value == "c"
    with pytest.raises(RuntimeError, match="sync"):  # a fresh failure reaches the caller
        ws.figures("key", 4, lambda: (_ for _ in ()).throw(RuntimeError("sync")))
    assert ws.derived["key"].value == "c" and not ws.computing


def test_kept_is_the_synchronous_path(ws: Workspace) -> None:
    calls: list[str] = []
    assert ws.kept("k", 1, lambda: calls.append("a") or "a") == "a"
    assert ws.kept("k", 1, lambda: calls.append("b") or "b") == "a"
    assert ws.kept("k", 2, lambda: calls.append("c") or "c") == "c"
    assert calls == ["a", "c"] and not ws.computing
