"""What the annotators' reliability costs cold: `worker_reliability` with its bootstrap.

Times `aggregation.worker_reliability` (the Dawid-Skene fit given, its 50 bootstrap
refits timed) on three crowds and prints one JSON line per crowd: the median CPU and wall
seconds of `--repeats` calls, the EM steps of the 50 refits (median, max, how many ran
into `n_iter`) as the fits log them, and the intervals' median width.

- ``coin_flips``: `review_read.py`'s project (3,000 items, 3 of 30 people a task, every
  answer a coin flip, 50 doctor labels known): Dawid-Skene's worst case, a flat likelihood;
- ``skilled``: the same project with people right 55-90% of the time;
- ``relex``: medical_relex_treat from the shared crowd data (48,459 answers), if present.

    PYTHONPATH=src .venv/bin/python benchmarks/reliability_cold.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from medloop.aggregation import DawidSkene
from medloop.aggregation.reliability import worker_reliability

CROWD_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crowd"


def project_crowd(
    *, items: int = 3000, people: int = 30, skilled: bool, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series]:
    """3 of `people` answer each item; 50 items' labels known (i % 2, as review_read's)."""
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(items), 3)
    worker = np.concatenate([rng.choice(people, 3, replace=False) for _ in range(items)])
    if skilled:
        truth = np.arange(items) % 2
        right = rng.random(len(task)) < rng.uniform(0.55, 0.9, people)[worker]
        label = np.where(right, truth[task], 1 - truth[task])
    else:
        label = rng.integers(0, 2, len(task))
    known = pd.Series(np.arange(50) % 2)
    return pd.DataFrame({"task": task, "worker": worker, "label": label}), known


class FitSteps(logging.Handler):
    """The EM steps each Dawid-Skene fit logs ("DawidSkene: %d iterations ...")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.steps: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("DawidSkene: %d"):
            self.steps.append(int(record.args[0]))  # type: ignore[index]


def time_crowd(
    name: str, answers: pd.DataFrame, known: pd.Series | None, repeats: int
) -> dict[str, object]:
    model = DawidSkene().fit(answers, known=known)
    counter = FitSteps()
    logger = logging.getLogger("medloop.aggregation")
    level = logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # counted, not printed
    cpu, wall = [], []
    try:
        for _ in range(repeats):
            counter.steps.clear()
            started, started_cpu = time.perf_counter(), time.process_time()
            table = worker_reliability(answers, known=known, model=model)
            wall.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
    finally:
        logger.removeHandler(counter)
        logger.propagate = True
        logger.setLevel(level)
    steps = np.array(counter.steps)
    return {
        "crowd": name,
        "answers": len(answers),
        "cpu_s": round(statistics.median(cpu), 3),
        "wall_s": round(statistics.median(wall), 3),
        "refit_steps_median": float(np.median(steps)),
        "refit_steps_max": int(steps.max()),
        "refits_at_cap": int((steps >= model.n_iter).sum()),
        "median_width": round(float((table["model_high"] - table["model_low"]).median()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    crowds = {
        "coin_flips": project_crowd(skilled=False),
        "skilled": project_crowd(skilled=True),
    }
    if (CROWD_DATA / "medical_relex_treat").exists():
        crowds["relex"] = (pd.read_csv(CROWD_DATA / "medical_relex_treat" / "answers.csv"), None)
    for name, (answers, known) in crowds.items():
        print(json.dumps(time_crowd(name, answers, known, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
