"""The audit page on a long log: `--rows` entries by 300 people and the system (a few
people write most of it, as annotators do), then the page's queries timed as the page
makes them (`workflows.audit.audit_log`: one page, its count, the list of actions),
each filter `--repeats` times, the median printed, with the query plan of the page.

    python benchmarks/audit_lookup.py --url sqlite:////tmp/audit.db --rows 1000000 --fill
    python benchmarks/audit_lookup.py --url sqlite:////tmp/audit.db

`--fill` migrates the database and appends the entries (once); without it the database
is only migrated to this medloop's newest schema, then timed. Prints one JSON line per
filter: the filter, matching entries, median seconds and the plan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, insert, select, text

from medloop.config import Settings
from medloop.store import Database
from medloop.store import repository as repo
from medloop.store.models import AuditEntry
from medloop.workflows import Workspace, audit

PEOPLE = 300
ACTIONS = ["answer", "item.read", "item.image", "label.final", "export.labels", "task.skip"]
FILTERS = [
    {"actor": "ann000"},  # the busiest annotator
    {"actor": "ann279"},  # one of the quietest
    {"actor": "DR_"},  # every doctor, in another case
    {"actor": "nobody"},
    {"action": "label.final"},
    {},
]


def fill(db: Database, *, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    names = [f"ann{n:03d}" for n in range(PEOPLE - 20)] + [f"dr_{n:02d}" for n in range(20)]
    weights = 1 / np.arange(1, PEOPLE + 1)
    people = rng.choice(PEOPLE, rows, p=weights / weights.sum())
    actions = rng.choice(len(ACTIONS), rows, p=[0.6, 0.2, 0.1, 0.05, 0.01, 0.04])
    start = datetime(2025, 12, 7, tzinfo=UTC)
    for first in range(0, rows, 50_000):
        batch = [
            {
                "at": start + timedelta(seconds=30 * n),
                "actor": "system" if n % 50 == 0 else names[people[n]],
                "action": ACTIONS[actions[n]],
                "entity": "item",
                "entity_id": str(n % 50_000),
                "detail": {},
            }
            for n in range(first, min(rows, first + 50_000))
        ]
        with db.session() as s:
            s.execute(insert(AuditEntry), batch)


def plans(db: Database, **wanted: str) -> list[list[str]]:
    """The query plans of the page's entries and count, as `repository.audit_entries`
    builds them for `wanted`."""
    captured: list[str] = []
    explain = "EXPLAIN QUERY PLAN " if db.engine.dialect.name == "sqlite" else "EXPLAIN "
    with db.session() as s:
        scalars, scalar = s.scalars, s.scalar

        def spy(run):  # type: ignore[no-untyped-def]
            def spied(statement, *args, **kwargs):  # type: ignore[no-untyped-def]
                sql = statement.compile(
                    dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}
                )
                captured.append(str(sql))
                return run(statement, *args, **kwargs)

            return spied

        s.scalars, s.scalar = spy(scalars), spy(scalar)  # type: ignore[method-assign]
        repo.audit_entries(s, limit=50, **wanted)
        return [[str(row[-1]) for row in s.execute(text(explain + sql)).all()] for sql in captured]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fill", action="store_true")
    args = parser.parse_args()
    db = Database(args.url)
    started = time.perf_counter()
    db.migrate()
    migrated = time.perf_counter() - started
    if args.fill:
        fill(db, rows=args.rows)
    with db.session() as s:
        total = s.scalar(select(func.count(AuditEntry.id)))
    print(json.dumps({"entries": total, "migrate_s": round(migrated, 2)}))
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace.open(Settings(home=Path(home), secret_key="k", database_url=args.url))
        for wanted in FILTERS:
            seconds = []
            for _ in range(args.repeats):
                begun = time.perf_counter()
                log = audit.audit_log(ws, **wanted)
                seconds.append(time.perf_counter() - begun)
            print(
                json.dumps(
                    {
                        "filter": wanted,
                        "matching": log.total,
                        "page_s": round(statistics.median(seconds), 4),
                        "plans": plans(db, **wanted),
                    }
                )
            )
        ws.close()
    db.dispose()


if __name__ == "__main__":
    main()
