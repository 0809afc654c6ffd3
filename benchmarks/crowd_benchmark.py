"""Crowd aggregation benchmark: medloop's aggregators vs crowd-kit's on real crowd data.

Every method runs on every dataset folder (answers.csv, gold.csv) in one run; gold
labels only score the result (tasks with gold and at least one answer). Prints one JSON
object per (dataset, method) and writes a markdown table of accuracy and seconds.
``--speed`` adds the synthetic 1,000,000-answer timing (100k tasks, 5k workers).

    .venv/bin/python benchmarks/crowd_benchmark.py --markdown benchmarks/crowd_table.md
    .venv/bin/python benchmarks/crowd_benchmark.py --speed-only

crowd-kit is a benchmark-only dependency (``pip install -e ".[bench]"``); without it
only medloop's methods run.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medloop.aggregation.registry import DEFAULT_METHOD, METHODS, Method, make_aggregator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "crowd"

Fit = Callable[[pd.DataFrame], pd.Series]


def medloop_methods() -> dict[str, Fit]:
    def runner(method: Method) -> Fit:
        return lambda answers: make_aggregator(method).fit_predict(answers)

    return {f"medloop.{m.value}": runner(m) for m in METHODS}


def crowdkit_methods(n_classes: int) -> dict[str, Fit]:
    """crowd-kit's classical aggregators (imported lazily; none needs transformers)."""
    try:
        from crowdkit.aggregation import (
            GLAD,
            KOS,
            MACE,
            MMSR,
            DawidSkene,
            MajorityVote,
            OneCoinDawidSkene,
            Wawa,
            ZeroBasedSkill,
        )
        from crowdkit.aggregation.classification import wawa, zero_based_skill
    except ImportError:
        logging.warning("crowd-kit is not installed: only medloop's methods run")
        return {}
    # crowd-kit 1.4.2 calls sklearn's check_is_fitted on non-sklearn classes, which
    # fails under scikit-learn >= 1.6; the check is only a guard, so skip it.
    for module in (wawa, zero_based_skill):
        module.check_is_fitted = lambda *args, **kwargs: None  # type: ignore[attr-defined]

    def fit(factory: Callable[[], Any]) -> Fit:
        return lambda answers: factory().fit_predict(answers)

    methods: dict[str, Fit] = {
        "crowdkit.MajorityVote": fit(MajorityVote),
        "crowdkit.Wawa": fit(Wawa),
        "crowdkit.ZeroBasedSkill": fit(ZeroBasedSkill),
        "crowdkit.DawidSkene": fit(lambda: DawidSkene(n_iter=100)),
        "crowdkit.OneCoinDawidSkene": fit(lambda: OneCoinDawidSkene(n_iter=100)),
        "crowdkit.GLAD": fit(GLAD),
        "crowdkit.MACE": fit(MACE),
        "crowdkit.MMSR": fit(MMSR),
    }
    if n_classes == 2:
        methods["crowdkit.KOS"] = fit(KOS)
    return methods


def score(labels: pd.Series, gold: pd.Series) -> tuple[float, int]:
    common = gold.index.intersection(labels.index)
    hits = labels.loc[common].astype(str).to_numpy() == gold.loc[common].astype(str).to_numpy()
    return float(hits.mean()), len(common)


def run_datasets(data_dir: Path, *, selected: list[str] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for folder in sorted(p for p in data_dir.iterdir() if (p / "answers.csv").is_file()):
        answers = pd.read_csv(folder / "answers.csv")[["task", "worker", "label"]]
        gold = pd.read_csv(folder / "gold.csv").set_index("task")["label"]
        methods = medloop_methods() | crowdkit_methods(int(answers["label"].nunique()))
        for name, fit in methods.items():
            if selected and not any(s in name for s in selected):
                continue
            started = time.perf_counter()
            row: dict[str, Any]
            try:
                labels = fit(answers)
            except Exception as error:  # a failing baseline is reported, not fatal
                row = {"dataset": folder.name, "method": name, "error": repr(error)[:200]}
            else:
                seconds = time.perf_counter() - started
                accuracy, n = score(labels, gold)
                row = {
                    "dataset": folder.name,
                    "method": name,
                    "accuracy": round(accuracy, 4),
                    "tasks_scored": n,
                    "seconds": round(seconds, 3),
                }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def synthetic(n_answers: int, n_tasks: int, n_workers: int, seed: int = 0) -> pd.DataFrame:
    """Binary crowd: worker accuracies ~ Beta(7, 3), tasks drawn uniformly per answer."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_tasks)
    skill = rng.beta(7, 3, n_workers)
    task = np.repeat(np.arange(n_tasks), n_answers // n_tasks)
    worker = rng.integers(0, n_workers, len(task))
    right = rng.random(len(task)) < skill[worker]
    label = np.where(right, truth[task], 1 - truth[task])
    return pd.DataFrame({"task": task, "worker": worker, "label": label})


def run_speed(*, crowdkit: bool) -> list[dict[str, Any]]:
    answers = synthetic(1_000_000, 100_000, 5_000)
    methods: dict[str, Fit] = {
        f"medloop.{DEFAULT_METHOD.value}": medloop_methods()[f"medloop.{DEFAULT_METHOD.value}"],
        "medloop.majority_vote": medloop_methods()["medloop.majority_vote"],
        "medloop.dawid_skene": medloop_methods()["medloop.dawid_skene"],
        "medloop.ebcc": medloop_methods()["medloop.ebcc"],
    }
    if crowdkit:
        ck = crowdkit_methods(2)
        for name in ("crowdkit.MajorityVote", "crowdkit.DawidSkene"):
            if name in ck:
                methods[name] = ck[name]
    rows = []
    for name, fit in methods.items():
        started = time.perf_counter()
        fit(answers)
        row = {
            "dataset": "synthetic_1M",
            "method": name,
            "answers": len(answers),
            "seconds": round(time.perf_counter() - started, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    scored = pd.DataFrame([r for r in rows if "accuracy" in r])
    if scored.empty:
        return ""
    acc = scored.pivot(index="method", columns="dataset", values="accuracy")
    secs = scored.pivot(index="method", columns="dataset", values="seconds")
    acc["mean"] = acc.mean(axis=1)
    acc["seconds (all)"] = secs.sum(axis=1)
    acc = acc.sort_values("mean", ascending=False)
    datasets = [c for c in acc.columns if c not in ("mean", "seconds (all)")]
    lines = ["| method | " + " | ".join([*datasets, "mean", "seconds (all)"]) + " |"]
    lines.append("|---" * (len(datasets) + 3) + "|")
    for method, values in acc.iterrows():
        cells = [f"{v:.3f}" if pd.notna(v) else "-" for v in values[datasets]]
        cells += [f"**{values['mean']:.4f}**", f"{values['seconds (all)']:.1f}"]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--methods", nargs="*", help="substrings of method names to run")
    parser.add_argument("--markdown", type=Path, help="write the accuracy table here")
    parser.add_argument("--speed", action="store_true", help="also time 1M synthetic answers")
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--no-crowdkit", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    rows: list[dict[str, Any]] = []
    if not args.speed_only:
        selected = args.methods or None
        if args.no_crowdkit:
            selected = [m for m in (selected or ["medloop."]) if "crowdkit" not in m]
        rows += run_datasets(args.data_dir, selected=selected)
    if args.speed or args.speed_only:
        rows += run_speed(crowdkit=not args.no_crowdkit)
    if args.markdown:
        args.markdown.write_text(markdown(rows))


if __name__ == "__main__":
    main()
