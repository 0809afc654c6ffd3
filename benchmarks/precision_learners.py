"""Choose the treatment-effect learner by measurement on ACTG 320 (and GBSG2 models).

Prints one JSON object per line: for each meta-learner x base model, the cross-fitted
IPW policy value of "treat when the estimated benefit is positive" vs treat-all; for
each survival method, GBSG2 held-out C-index / mean AUC / IBS on the evaluation-guide split.

    nice -n 10 .venv/bin/python benchmarks/precision_learners.py
"""

from __future__ import annotations

import json
import time

from medloop.precision.benchmark import bench_actg, bench_gbsg2


def main() -> None:
    for method in ("cox", "rsf", "gbsa", "ensemble"):
        start = time.perf_counter()
        row = {"dataset": "gbsg2", "method": method, **bench_gbsg2(method=method)}
        row["seconds"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)
    for learner in ("t", "s", "x"):
        for base in ("linear", "gbm"):
            start = time.perf_counter()
            row = {
                "dataset": "actg320",
                "learner": learner,
                "base": base,
                **bench_actg(learner=learner, base=base),
            }
            row["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
