"""Commands of the loop: init, ingest, deid, simulate, train, evaluate, loop and `bench
loop` (`medloop review` lives in `cli.review`, `medloop demo` in `cli.demo`)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medloop import workflows
from medloop.cli.common import (
    STRATEGY_HELP,
    JsonOpt,
    ProjectOpt,
    SeedOpt,
    app,
    bench_app,
    erased_line,
    ingest_app,
    out,
    output_file,
    print_json,
    progress_bar,
    pseudonymising,
    record_table,
    table,
    workspace,
)
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.types import RECOMMENDED_STRATEGY, Allocation


@app.command()
def init() -> None:
    """Create MEDLOOP_HOME and bring its database schema up to date."""
    settings = Settings()
    with workspace(settings):
        pass
    out.print(f"medloop home ready at {settings.home.resolve()}")


@ingest_app.command("medmnist")
def ingest_medmnist(
    name: Annotated[str, typer.Argument(help="MedMNIST 2D dataset, e.g. pneumoniamnist.")],
    limit: Annotated[
        int | None, typer.Option(help="Keep a seeded random sample of N rows per split.")
    ] = None,
    project: Annotated[str | None, typer.Option(help="Project name (default: NAME).")] = None,
) -> None:
    """Ingest a MedMNIST dataset from MEDLOOP_DATA_DIR (or download it)."""
    with workspace() as ws, progress_bar() as progress:
        summary = workflows.ingest_medmnist(
            ws, name=name, project=project, limit=limit, progress=progress
        )
    out.print(f"ingested {summary.items} items into {summary.project!r}: {summary.splits}")


PixelsCheckedOpt = Annotated[
    bool,
    typer.Option(
        help="A person has looked at these images and they show no name or other identifier: "
        "accept secondary captures, ultrasound and photographs that do not state "
        "BurnedInAnnotation (an ingest records it in the audit log)."
    ),
]
FinalByOpt = Annotated[
    str | None,
    typer.Option(
        help="A doctor's (or admin's) username: the CSV's labels become their final labels, "
        "so a model can train on them at once (default: reference labels only)."
    ),
]


@ingest_app.command("images")
def ingest_images(
    folder: Annotated[Path, typer.Argument(help="Folder of PNG/JPEG images.")],
    project: ProjectOpt,
    labels: Annotated[Path | None, typer.Option(help="CSV: file,label[,patient_id].")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names.")] = None,
    final_by: FinalByOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Ingest an image folder with a CSV of labels; patient ids are pseudonymised. Run it
    again after a failure or an interruption: it skips the images already imported."""
    _ingest_folder(workflows.ingest_image_folder, folder, project, labels, classes, final_by, seed)


@ingest_app.command("dicom")
def ingest_dicom(
    folder: Annotated[Path, typer.Argument(help="Folder of DICOM files.")],
    project: ProjectOpt,
    labels: Annotated[Path | None, typer.Option(help="CSV: file,label.")] = None,
    classes: Annotated[str | None, typer.Option(help="Comma-separated class names.")] = None,
    final_by: FinalByOpt = None,
    seed: SeedOpt = 0,
    pixels_checked: PixelsCheckedOpt = False,
) -> None:
    """Ingest DICOM files, de-identified on the way in (PS3.15 basic profile); a file whose
    pixels may show who the patient is (a face, burned-in text) is refused. Run it again
    after a failure or an interruption: it skips the files already imported."""
    _ingest_folder(
        workflows.ingest_dicom_folder,
        folder,
        project,
        labels,
        classes,
        final_by,
        seed,
        pixels_checked=pixels_checked,
    )


def _ingest_folder(
    ingest: Callable[..., workflows.IngestSummary],
    folder: Path,
    project: str,
    labels: Path | None,
    classes: str | None,
    final_by: str | None,
    seed: int,
    **options: bool,
) -> None:
    with workspace(pseudonymising(Settings())) as ws, progress_bar() as progress:
        summary = ingest(
            ws,
            folder=folder,
            project=project,
            labels_csv=labels,
            classes=classes.split(",") if classes else None,
            seed=seed,
            final_by=final_by,
            progress=progress,
            **options,
        )
    if summary.items or not summary.skipped:
        splits = summary.splits
        out.print(f"ingested {summary.items} items ({summary.patients} patients): {splits}")
    if summary.skipped:
        out.print(f"skipped {summary.skipped} already imported")
    if summary.erased:
        out.print(erased_line(summary.erased, "images"))
    for reason, names in summary.left_out.items():
        shown = ", ".join(names[:10]) + (
            f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
        )
        out.print(f"{len(names)} files skipped ({reason}): {shown}")
    if summary.final_labels:
        out.print(f"{summary.final_labels} labels are final labels by {final_by}: train on them")
    elif summary.labelled:
        out.print(
            f"{summary.labelled} labels are reference labels (evaluation, simulations); "
            "--final-by DOCTOR makes them final labels a model trains on"
        )


@app.command()
def deid(
    source: Annotated[Path, typer.Argument(help="DICOM file to de-identify.")],
    target: Annotated[Path, typer.Argument(help="Where to write the de-identified file.")],
    pixels_checked: PixelsCheckedOpt = False,
) -> None:
    """De-identify one DICOM file (PS3.15 basic profile; keyed patient pseudonym; dates
    moved by the patient's date shift, as on import); a file whose pixels may show who
    the patient is (a face, burned-in text) is refused."""
    from medloop.ingest import deidentify_file
    from medloop.workflows.workspace import date_shift_key

    if source.resolve() == target.resolve():
        raise InvalidInputError("refusing to overwrite the original; choose another OUT path")
    output_file(target)
    settings = pseudonymising(Settings())
    pseudonym = deidentify_file(
        source,
        target,
        key=settings.resolved_secret_key,
        date_key=date_shift_key(settings),
        pixels_checked=pixels_checked,
    )
    out.print(f"wrote {target} (patient pseudonym {pseudonym})")


@app.command()
def simulate(
    project: ProjectOpt,
    items: Annotated[int, typer.Option(help="How many new items to label.")] = 200,
    strategy: Annotated[str, typer.Option(help=STRATEGY_HELP)] = RECOMMENDED_STRATEGY.value,
    redundancy: Annotated[int, typer.Option(help="Lay answers per item.")] = 3,
    gold_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of gold questions.")
    ] = 0.1,
    lay_accuracy: Annotated[float, typer.Option(help="Mean lay accuracy.")] = 0.7,
    annotators: Annotated[int, typer.Option(help="Simulated lay annotators.")] = 30,
    seed: SeedOpt = 0,
) -> None:
    """Simulated lay annotators answer the next items (chosen by active learning)."""
    from medloop.annotation import SimulatedCrowd

    with workspace() as ws:
        chosen = workflows.select_items(ws, project=project, k=items, strategy=strategy, seed=seed)
        n_classes = len(workflows.project_classes(ws, project=project))
        crowd = SimulatedCrowd(
            annotators, n_classes=n_classes, accuracy_mean=lay_accuracy, seed=seed
        )
        result = workflows.collect_crowd_answers(
            ws,
            project=project,
            item_ids=chosen,
            crowd=crowd,
            redundancy=redundancy,
            gold_rate=gold_rate,
            seed=seed,
        )
    out.print(f"{result.tasks} tasks ({result.gold_tasks} gold), {result.answers} answers")


@app.command()
def train(
    project: ProjectOpt,
    max_epochs: Annotated[int | None, typer.Option(help="Upper bound on epochs.")] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a new model version on the current labels (final, else consensus)."""
    from medloop.learning import TrainConfig

    config = TrainConfig(seed=seed)
    if max_epochs is not None:
        config = dataclasses.replace(config, max_epochs=max_epochs)
    with workspace() as ws, progress_bar() as progress:

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:  # epochs count from 1
            progress("training (epochs)", epoch, config.max_epochs)

        progress("training (epochs)", 0, config.max_epochs)  # the bar shows from the start
        metrics = workflows.train(ws, project=project, config=config, on_epoch=on_epoch)
    print_json(metrics) if as_json else out.print(record_table("new model version", metrics))


@app.command()
def evaluate(
    project: ProjectOpt,
    version: Annotated[int | None, typer.Option(help="Model version (default newest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a model version's validation and test metrics."""
    with workspace() as ws:
        metrics = workflows.evaluate(ws, project=project, version=version)
    print_json(metrics) if as_json else out.print(record_table("model", metrics))


def _loop_settings(
    rounds: int, per_round: int, strategy: str, seed: int, **extra: Any
) -> workflows.LoopSettings:
    return workflows.LoopSettings(
        rounds=rounds, per_round=per_round, strategy=strategy, seed=seed, **extra
    )


AllocationOpt = Annotated[
    str,
    typer.Option(
        help="fixed: 3 lay answers per new item, then doctor reviews; cost_aware: one lay "
        "answer per new item, then the same money spent where it removes most expected errors."
    ),
]
LayCostOpt = Annotated[float, typer.Option(help="Cost of one lay answer (cost_aware).")]
DoctorCostOpt = Annotated[float, typer.Option(help="Cost of one doctor's review (cost_aware).")]


@app.command()
def loop(
    project: ProjectOpt,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of the loop.")] = 5,
    per_round: Annotated[int, typer.Option(min=1, help="New items per round.")] = 200,
    strategy: Annotated[str, typer.Option(help=STRATEGY_HELP)] = RECOMMENDED_STRATEGY.value,
    doctor_budget: Annotated[int, typer.Option(help="Doctor reviews per round.")] = 50,
    allocation: AllocationOpt = Allocation.FIXED.value,
    lay_cost: LayCostOpt = 1.0,
    doctor_cost: DoctorCostOpt = 20.0,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Run the loop on an ingested project with simulated lay annotators and doctors."""
    settings = _loop_settings(
        rounds,
        per_round,
        strategy,
        seed,
        doctor_budget=doctor_budget,
        allocation=allocation,
        lay_cost=lay_cost,
        doctor_cost=doctor_cost,
    )
    with workspace() as ws:
        _run_and_report(ws, project=project, settings=settings, as_json=as_json)


def _run_and_report(
    ws: workflows.Workspace, *, project: str, settings: workflows.LoopSettings, as_json: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def on_round(report: workflows.RoundReport) -> None:
        rows.append(report.as_dict())
        if as_json:
            print(json.dumps(rows[-1]), flush=True)

    if as_json:
        workflows.run_loop(ws, project=project, settings=settings, on_round=on_round)
    else:
        with progress_bar() as progress:
            workflows.run_loop(
                ws, project=project, settings=settings, on_round=on_round, progress=progress
            )
        out.print(round_table(rows))
    return rows


ROUND_COLUMNS = {
    "round": "round",
    "labelled_items": "items",
    "crowd_answers": "answers",
    "doctor_labels": "doctor",
    "majority_vote_accuracy": "MV acc",
    "consensus_accuracy": "loop acc",
    "test_auc": "test AUC",
    "test_acc": "test acc",
    "cost": "cost",
    "seconds": "s",
}


def round_table(rows: list[dict[str, Any]], *, width: int | None = None) -> Table:
    """The loop's rounds as a table (`RoundReport.as_dict` rows) for a terminal `width`
    characters wide (default: this one)."""
    summary = [{label: r[key] for key, label in ROUND_COLUMNS.items()} for r in rows]
    for row in summary:
        row["s"] = round(row["s"])
    rounds = table("the loop, round by round", summary, width=width)
    free = rows[-1].get("reference_val_labels") if rows else None
    if free:
        rounds.caption = (
            f"Each model was chosen on up to {free} validation labels from the dataset, "
            "given free: they are not in the cost."
        )
    return rounds


@bench_app.command("loop")
def bench_loop(
    dataset: Annotated[str, typer.Option(help="MedMNIST dataset name.")] = "pneumoniamnist",
    rounds: Annotated[int, typer.Option(min=1, help="Rounds of the loop.")] = 5,
    per_round: Annotated[int, typer.Option(min=1, help="New items per round.")] = 200,
    strategy: Annotated[str, typer.Option(help=STRATEGY_HELP)] = RECOMMENDED_STRATEGY.value,
    doctor_budget: Annotated[int, typer.Option(help="Doctor reviews per round.")] = 50,
    lay_accuracy: Annotated[float, typer.Option(help="Mean lay accuracy.")] = 0.7,
    allocation: AllocationOpt = Allocation.FIXED.value,
    lay_cost: LayCostOpt = 1.0,
    doctor_cost: DoctorCostOpt = 20.0,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """The loop on a MedMNIST dataset in a throw-away home: one JSON object per round."""
    settings = _loop_settings(
        rounds,
        per_round,
        strategy,
        seed,
        doctor_budget=doctor_budget,
        lay_accuracy=lay_accuracy,
        allocation=allocation,
        lay_cost=lay_cost,
        doctor_cost=doctor_cost,
    )
    base = Settings()
    with tempfile.TemporaryDirectory(prefix="medloop-bench-") as home:
        bench = Settings(home=Path(home), data_dir=base.data_dir, secret_key=base.secret_key)
        with workspace(bench) as ws:
            workflows.ingest_medmnist(ws, name=dataset)
            _run_and_report(ws, project=dataset, settings=settings, as_json=as_json)
