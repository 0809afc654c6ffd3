"""Learning commands: `bench train` (and `bench al`).

torch is imported only when a command runs, so `medloop --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from medloop.cli.common import (
    JsonOpt,
    SeedOpt,
    bench_app,
    out,
    output_file,
    print_json,
    record_table,
    table,
)
from medloop.config import Settings
from medloop.exceptions import InvalidInputError


def _config_overrides(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--config must be a JSON object: {exc}") from exc
    if not isinstance(overrides, dict):
        raise InvalidInputError("--config must be a JSON object of TrainConfig fields")
    return overrides


@bench_app.command("train")
def bench_train(
    dataset: Annotated[
        str,
        typer.Option(help="MedMNIST 2D dataset, e.g. pneumoniamnist or chestmnist (multi-label)."),
    ],
    seed: SeedOpt = 0,
    predictions: Annotated[
        Path | None,
        typer.Option(
            help="Write the test split's predictions CSV here: index,label,p0..; for a "
            "multi-label set, label lists the predicted labels joined by '|'."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the ensemble checkpoint (<dataset>.pt, for `predict` and "
            "`model export`), metrics JSON and plots."
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="TrainConfig overrides as JSON, e.g. '{\"max_epochs\": 5}'.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Sample N rows per split (quick runs).")] = None,
    members: Annotated[
        int | None,
        typer.Option(
            min=1, help="Most networks in the ensemble, logits averaged (default: the preset's 5)."
        ),
    ] = None,
    seconds: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Training time budget of the ensemble (default: the preset's 510 s); "
            "another member starts only while what is left is at least what a member took.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on the train split, choose on val, score on test; one JSON object with --json.

    Multi-label sets (chestmnist): one sigmoid per label; AUC and ACC are label means.
    """
    from medloop.learning.bench import BENCH_CONFIG, BENCH_MEMBERS, BENCH_SECONDS
    from medloop.learning.bench import bench_train as run
    from medloop.learning.train import TrainConfig

    overrides = _config_overrides(config)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidInputError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
    train_config = dataclasses.replace(BENCH_CONFIG, **overrides)
    output_file(predictions)  # before the minutes of training, not after
    result = run(
        dataset,
        data_dir=Settings().data_dir,
        seed=seed,
        config=train_config,
        predictions=predictions,
        output_dir=output,
        limit=limit,
        members=BENCH_MEMBERS if members is None else members,
        seconds=BENCH_SECONDS if seconds is None else seconds,
    )
    if as_json:
        print_json(result)
    else:
        out.print(record_table(f"bench train {dataset}", result))


def _int_list(text: str, *, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInputError(f"{option} must be comma-separated integers; got {text!r}") from exc


@bench_app.command("al")
def bench_al(
    dataset: Annotated[str, typer.Option(help="MedMNIST 2D dataset, e.g. pneumoniamnist.")],
    strategies: Annotated[
        str, typer.Option(help="Comma-separated: random,entropy,margin,bald,coreset,hybrid.")
    ] = "random,entropy,bald,coreset,hybrid",
    budgets: Annotated[str, typer.Option(help="Comma-separated label budgets.")] = (
        "100,200,400,700,1000"
    ),
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1).")] = 3,
    plot: Annotated[Path | None, typer.Option(help="Write the learning curves PNG here.")] = None,
    config: Annotated[str | None, typer.Option(help="TrainConfig overrides as JSON.")] = None,
    limit: Annotated[int | None, typer.Option(help="Sample N rows per split (quick runs).")] = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="Worker processes, one (strategy, seed) curve each.")
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Active-learning curves per strategy: one JSON object per (strategy, seed, budget) run,
    then one summary object per strategy (mean, std, area under the curve)."""
    from medloop.learning.al_bench import AL_CONFIG, plot_curves, run_active_learning, summarise

    if seeds < 1:
        raise InvalidInputError("--seeds must be >= 1")
    output_file(plot)  # before the hours of training, not after
    train_config = dataclasses.replace(AL_CONFIG, **_config_overrides(config))
    records = run_active_learning(
        dataset,
        data_dir=Settings().data_dir,
        strategies=[s.strip() for s in strategies.split(",") if s.strip()],
        budgets=_int_list(budgets, option="--budgets"),
        seeds=list(range(seeds)),
        config=train_config,
        limit=limit,
        on_result=print_json if as_json else None,
        jobs=jobs,
    )
    summary = summarise(records)
    if plot is not None:
        plot_curves(summary, plot, title=f"Active learning on {dataset}")
    if as_json:
        for row in summary:
            print_json({"summary": True, "dataset": dataset, **row})
    else:
        out.print(table(f"active learning on {dataset}", summary))
