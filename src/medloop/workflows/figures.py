"""Figures derived from a project's answers and labels (each annotator's reliability on
the review pages and the dashboard), kept in the workspace and said how old when shown.

With lay annotators answering all the time, nearly every answer would make a doctor's
next page recompute them (6-23 s on a project of 458,000 answers). A server asks with
``fresh=False``: an outdated value is shown at once with a `FiguresAge` saying how far
behind it is, while one background thread recomputes it (`Workspace.figures`). The CLI,
scripts and tests ask with ``fresh=True`` (the default of the workflows that show them)
and get current figures, computed in the call where needed. No write reads them: a
doctor's decision stores the label chosen, whatever the figures said.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

from sqlalchemy.orm import Session

from medloop.store import repository as repo
from medloop.workflows.workspace import Workspace

T = TypeVar("T")


@dataclass(frozen=True)
class FiguresAge:
    """How far behind figures shown outdated are: computed from the project as it was
    `seconds` ago (at `computed_at`, UTC), since when it gained `answers` answers and
    `labels` labels; `updating`: they are being recomputed (a later view shows them)."""

    answers: int
    labels: int
    computed_at: datetime
    seconds: int
    updating: bool

    @property
    def behind(self) -> str:
        """What the figures miss, in words: "3 answers and 1 label"."""
        parts = [
            f"{n:,} {word}{'' if n == 1 else 's'}"
            for n, word in ((self.answers, "answer"), (self.labels, "label"))
            if n
        ]
        return " and ".join(parts)

    @property
    def age(self) -> str:
        """How long ago they were computed, roughly: "40 s", "3 min", "2 h"."""
        if self.seconds < 90:
            return f"{self.seconds} s"
        if self.seconds < 90 * 60:
            return f"{math.floor(self.seconds / 60)} min"
        return f"{math.floor(self.seconds / 3600)} h"


def project_figures(
    ws: Workspace,
    *,
    key: Hashable,
    project_id: int,
    compute: Callable[[Session], T],
    fresh: bool,
) -> tuple[T, FiguresAge | None]:
    """`compute(session)`'s value kept under `key` until the project gains an answer or a
    label (`repository.label_state`), and how far behind it is (None: current).
    `fresh`: computed now where outdated; otherwise an outdated value comes at once while
    it is recomputed in the background (`Workspace.figures`)."""

    def run() -> tuple[Hashable, T]:
        with ws.db.session() as s:  # its own session: it may run in a background thread
            state = repo.label_state(s, project_id=project_id)
            return state, compute(s)

    with ws.db.session() as s:
        state = repo.label_state(s, project_id=project_id)
    kept = ws.figures(key, state, run, fresh=fresh)
    if kept.state == state:
        return kept.value, None
    kept_state = cast(tuple[int, int], kept.state)  # a `label_state`
    with ws.db.session() as s:
        answers, labels = repo.label_changes_since(s, project_id=project_id, state=kept_state)
    if not answers and not labels:  # computed from newer data than this call read
        return kept.value, None
    seconds = (datetime.now(UTC) - kept.computed_at).total_seconds()
    return kept.value, FiguresAge(
        answers=answers,
        labels=labels,
        computed_at=kept.computed_at,
        seconds=max(0, round(seconds)),
        updating=kept.updating,
    )
