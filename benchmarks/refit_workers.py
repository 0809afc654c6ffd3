"""Bootstrap refits in worker processes: wall seconds at 1 and N workers, in one run.

GBSG2 (686 patients, the ensemble survival model's 39-refit band for the whole cohort)
and ACTG 320 (1,151 patients, the gradient-boosted T-learner's 39 refits). Checks that
the results are identical whatever the number of workers, and prints one JSON object
per line.

    nice -n 10 .venv/bin/python benchmarks/refit_workers.py [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sksurv.datasets import load_gbsg2

from medloop.precision import TreatmentEffects, bootstrap_band
from medloop.precision.benchmark import actg_data, gbsg2_features


def _gbsg2_band(n_jobs: int) -> Any:
    X, y = load_gbsg2()
    features = gbsg2_features(X)
    times = np.quantile(y["time"], [0.25, 0.5, 0.75])
    lower, upper = bootstrap_band(
        features, y, features, times, method="ensemble", n_bootstrap=39, n_jobs=n_jobs
    )
    return pd.concat([lower, upper], axis=1).to_numpy()


def _actg_effects(n_jobs: int) -> Any:
    X, treatment, _time, event = actg_data()
    model = TreatmentEffects("t", "gbm", n_bootstrap=39, n_jobs=n_jobs)
    model.fit(X, treatment, 1.0 - event.astype(float))
    return model.estimate(X)[["benefit", "lower", "upper"]].to_numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tasks: dict[str, Callable[[int], Any]] = {
        "gbsg2_ensemble_band": _gbsg2_band,
        "actg320_gbm_t_learner": _actg_effects,
    }
    for name, task in tasks.items():
        seconds: dict[int, list[float]] = {1: [], args.workers: []}
        results: dict[int, Any] = {}
        for _ in range(args.repeats):
            for n_jobs in (1, args.workers):  # alternated, so load falls on both alike
                start = time.perf_counter()
                results[n_jobs] = task(n_jobs)
                seconds[n_jobs].append(round(time.perf_counter() - start, 2))
        same = bool(np.array_equal(results[1], results[args.workers]))
        ratio = min(seconds[1]) / min(seconds[args.workers])
        print(
            json.dumps(
                {
                    "task": name,
                    "workers": args.workers,
                    "seconds_1": seconds[1],
                    f"seconds_{args.workers}": seconds[args.workers],
                    "speedup_best": round(ratio, 2),
                    "identical": same,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
