"""A hospital's project after a year, for timing exports: `--items` items (no images:
the CSV exports read none), `--answers` crowd answers spread over them by 200 people,
`--recomputes` consensus runs (one row per item each, as `aggregate` writes them) and a
doctor's final label on one item in 20, all in a SQLite home at `--home`.

    python benchmarks/export_memory.py --home /tmp/big --items 50000 --answers 200000

then time an export with its peak memory (resident set) by the CLI, e.g.

    MEDLOOP_HOME=/tmp/big /usr/bin/time -v medloop export answers /tmp/a.csv -p big

Prints one JSON line: the counts written and the seconds the build took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medloop.config import Settings
from medloop.store import repository as repo
from medloop.types import LabelKind, LabelSource, Role
from medloop.workflows import Workspace

PEOPLE = 200
BATCH = 20_000


def build(home: Path, *, items: int, answers: int, recomputes: int, seed: int = 0) -> dict:
    """Fill a new home's project "big" (classes normal, pneumonia)."""
    rng = np.random.default_rng(seed)
    ws = Workspace.open(Settings(home=home, secret_key="benchmark"))
    try:
        with ws.db.session() as s:
            project = repo.create_project(
                s, name="big", classes=["normal", "pneumonia"], n_channels=1
            )
            new = [
                repo.NewItem(f"img{n:06d}.png", f"{n:064x}", ("train", "val", "test")[n % 3])
                for n in range(items)
            ]
            repo.add_items(s, project=project, items=new)
            item_ids = repo.items_frame(s, project_id=project.id).index.tolist()
            per_item = max(1, answers // items)
            tasks = repo.create_tasks(
                s, project_id=project.id, item_ids=item_ids, required_answers=per_item
            )
            people = repo.ensure_users(
                s,
                usernames=[f"ann{n:03d}" for n in range(PEOPLE)],
                role=Role.ANNOTATOR,
                simulated=True,
            )
            person_ids = list(people.values())
        task_ids, worker_ids = [], []
        for task in tasks:
            for person in rng.choice(person_ids, per_item, replace=False):
                task_ids.append(task)
                worker_ids.append(int(person))
        labels = rng.integers(0, 2, len(task_ids)).tolist()
        for start in range(0, len(task_ids), BATCH):
            with ws.db.session() as s:
                repo.add_answers(
                    s,
                    task_ids=task_ids[start : start + BATCH],
                    worker_ids=worker_ids[start : start + BATCH],
                    labels=labels[start : start + BATCH],
                    source=LabelSource.CROWD,
                )
        index = pd.Index(item_ids)
        for _ in range(recomputes):
            p = rng.random(items)
            probabilities = pd.DataFrame({0: 1 - p, 1: p}, index=index)
            with ws.db.session() as s:
                repo.add_item_labels(
                    s,
                    project_id=project.id,
                    labels=(probabilities[1] > 0.5).astype(int),
                    kind=LabelKind.CONSENSUS,
                    source=LabelSource.CROWD,
                    method="dawid_skene",
                    probabilities=probabilities,
                )
        signed = pd.Series(rng.integers(0, 2, items // 20), index=index[::20][: items // 20])
        with ws.db.session() as s:
            doctor = repo.ensure_users(s, usernames=["dr_b"], role=Role.DOCTOR, simulated=True)
            repo.add_item_labels(
                s,
                project_id=project.id,
                labels=signed,
                kind=LabelKind.FINAL,
                source=LabelSource.DOCTOR,
                method="review",
                decided_by_id=doctor["dr_b"],
            )
    finally:
        ws.close()
    return {
        "items": items,
        "answers": len(task_ids),
        "consensus_rows": items * recomputes,
        "final_labels": len(signed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--answers", type=int, default=200_000)
    parser.add_argument("--recomputes", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = build(args.home, items=args.items, answers=args.answers, recomputes=args.recomputes)
    print(json.dumps({**counts, "build_s": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
