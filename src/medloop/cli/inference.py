"""Inference commands: `predict` on files and `model export` (TorchScript).

torch is imported only when a command runs, so `medloop --help` stays fast.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from medloop import workflows
from medloop.cli.common import (
    JsonOpt,
    app,
    console,
    out,
    output_file,
    print_json,
    progress_bar,
    workspace,
)
from medloop.config import Settings
from medloop.exceptions import IngestError, UnknownOptionError

model_app = typer.Typer(
    help="Trained models: list them, put one in use (roll back), what one learned from, "
    "export for fast inference.",
    no_args_is_help=True,
)
app.add_typer(model_app, name="model")

ModelArg = Annotated[
    str,
    typer.Argument(
        help="A classifier or ensemble checkpoint (.pt), a TorchScript file, or a project name."
    ),
]
EXPORT_FORMATS = ("torchscript",)


def _classes(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",")] if text else None


@app.command()
def predict(
    model: ModelArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image/DICOM files or folders.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions CSV.")] = Path(
        "predictions.csv"
    ),
    overlays: Annotated[
        Path | None, typer.Option(help="Write a Grad-CAM overlay PNG per file into this folder.")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="Class names of a model file, comma-separated.")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Files read and predicted at a time (bounds memory).")
    ] = 256,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable", help="Leave unreadable files out and list them, not stop."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict PNG/JPEG/DICOM files: a CSV of file, label, p0..p{K-1} (no DICOM identifiers).

    A model version's checkpoint (by project, or its file in the home's model folder) is
    checked against the sha256 recorded when it was trained; another file is used
    unverified, as the output says."""
    output_file(output, inputs=inputs)
    settings = Settings()
    home = workflows.predict.needs_workspace(model, settings=settings)
    with workspace(settings) if home else nullcontext(None) as ws, progress_bar() as progress:
        loaded = workflows.predict.load_model(model, ws=ws, classes=_classes(classes))
        try:
            summary = workflows.predict.predict_files(
                inputs,
                model=loaded,
                output=output,
                overlays=overlays,
                batch_size=batch_size,
                skip_unreadable=skip_unreadable,
                progress=progress,
            )
        except IngestError as exc:
            raise IngestError(
                exc.path, f"{exc.reason} (--skip-unreadable leaves such files out)"
            ) from exc
    skipped = [{"file": s.file, "reason": s.reason} for s in summary.skipped]
    result = {
        "model": summary.model,
        "files": summary.files,
        "classes": summary.classes,
        "output": str(summary.output),
        "overlays": summary.overlays,
        "skipped": skipped,
        "threshold": summary.threshold,
        "verified": summary.verified,
    }
    if as_json:
        print_json(result)
        return
    extra = f" and {summary.overlays} overlays in {overlays}" if overlays else ""
    out.print(f"predicted {summary.files} files with {summary.model}: {output}{extra}")
    if not summary.verified:
        out.print(
            f"{summary.model} is unverified: no sha256 recorded when it was trained was "
            "checked (not a model version's file in this home, or one trained before "
            "digests were recorded)"
        )
    if summary.threshold is not None:
        no, yes = summary.classes
        out.print(
            f"label is {yes!r} where p1 >= {summary.threshold:.3f} (the cut chosen on "
            f"validation), else {no!r}"
        )
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable files:[/yellow]")
        for item in skipped:
            console.print(f"  {item['file']}: {item['reason']}", markup=False, highlight=False)


@model_app.command("export")
def export(
    model: ModelArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    format: Annotated[str, typer.Option("--format", help="Export format: torchscript.")] = (
        "torchscript"
    ),
    quantize: Annotated[
        bool, typer.Option(help="Dynamic int8 quantisation of the linear layers.")
    ] = False,
) -> None:
    """Export a model for fast CPU inference (calibrated probabilities, no medloop needed).

    An ensemble checkpoint becomes one file that averages its members' logits."""
    from medloop.learning.inference import export_torchscript

    if format.strip().lower() not in EXPORT_FORMATS:
        raise UnknownOptionError(
            f"unknown export format {format!r}; choose one of {EXPORT_FORMATS}"
        )
    output_file(output, inputs=(Path(model),))
    settings = Settings()
    home = workflows.predict.needs_workspace(model, settings=settings)
    with workspace(settings) if home else nullcontext(None) as ws:
        loaded = workflows.predict.load_model(model, ws=ws)
    if loaded.classifier is None:
        raise UnknownOptionError(f"{model} is already an export; give a checkpoint or project")
    export_torchscript(loaded.classifier, output, quantize=quantize)
    out.print(f"wrote {output} ({format}{', quantized' if quantize else ''}) from {loaded.name}")
