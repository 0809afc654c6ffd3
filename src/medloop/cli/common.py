"""Shared pieces of the command line: the Typer apps, consoles, progress bars, tables.

Commands stay thin: they build Settings, open the workspace, call `medloop.workflows`
and print. Each topic module (`loop`, `crowd`, `learning`, `precision`) registers its
commands on the apps defined here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from medloop import workflows
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.times import iso_time
from medloop.types import RECOMMENDED_STRATEGY, Strategy

if TYPE_CHECKING:
    import pandas as pd

STRATEGY_HELP = (
    f"Active-learning strategy: {', '.join(Strategy)} (recommended: {RECOMMENDED_STRATEGY})."
)

app = typer.Typer(
    name="medloop",
    help="Lay annotators, doctors and models labelling medical images together.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # a docstring's wrapped lines read as one paragraph
)
ingest_app = typer.Typer(help="Bring data in (de-identified on the way).", no_args_is_help=True)
bench_app = typer.Typer(
    help="Reproducible benchmarks; --json prints one object per line.", no_args_is_help=True
)
app.add_typer(ingest_app, name="ingest")
app.add_typer(bench_app, name="bench")

#: Who the audit log names for what is done from the command line.
CLI_ACTOR = "cli"

console = Console(stderr=True)
out = Console()

ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
YesOpt = Annotated[bool, typer.Option("--yes", help="Do it; without it, only show what would go.")]


@app.callback()
def _configure_logging(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log what each stage does (to stderr).")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


@contextmanager
def workspace(settings: Settings | None = None) -> Iterator[workflows.Workspace]:
    ws = workflows.Workspace.open(settings or Settings())
    try:
        yield ws
    finally:
        ws.close()


def pseudonymising(settings: Settings) -> Settings:
    """`settings`, after a warning when they key pseudonyms with the public development
    key: for commands that pseudonymise patients on the way in."""
    if settings.uses_development_key:
        console.print(
            "[yellow]warning:[/] MEDLOOP_SECRET_KEY is not set, so pseudonyms use the public "
            "development key and anyone could recompute them from the raw ids; set a "
            "private key before importing real patients' data"
        )
    return settings


@contextmanager
def progress_bar() -> Iterator[workflows.Progress]:
    """A Rich progress bar as a workflows progress callback (one bar per stage). The
    display starts with the first stage, so work that fails before any progress prints
    nothing but its error."""
    bars: dict[str, Any] = {}
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )

    def update(description: str, done: int, total: int) -> None:
        key = description.split(":", 1)[0]
        if not bars:
            progress.start()
        if key not in bars:
            bars[key] = progress.add_task(description, total=total)
        progress.update(bars[key], description=description, completed=done, total=total)

    try:
        yield update
    finally:
        if bars:
            progress.stop()


def print_json(data: Any) -> None:
    text = json.dumps(data, default=str)
    if out.is_terminal:
        out.print_json(text)
    else:
        print(text, flush=True)


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows (index reset into columns) as dicts, missing values as None (JSON
    has no NaN)."""
    rows = frame.reset_index()
    return list(rows.astype(object).where(rows.notna(), None).to_dict(orient="records"))


def table(title: str, rows: list[dict[str, Any]], *, width: int | None = None) -> Table:
    """Rows as a table. Where every column fits whole (its longest cell, and its header
    wrapped at spaces) within `width` (default: the terminal's), each gets exactly that:
    Rich's own shrinking cuts some headers short even when everything would fit."""
    table = Table(title=title, pad_edge=False)  # two more characters for the columns
    columns = [str(c) for c in rows[0]] if rows else []
    cells = [[_cell(v) for v in row.values()] for row in rows]
    natural = [
        max([len(word) for word in column.split()] + [len(row[j]) for row in cells] + [1])
        for j, column in enumerate(columns)
    ]
    chrome = 3 * len(columns) - 1  # a border and a space either side, no outer padding
    fits = sum(natural) + chrome <= (out.width if width is None else width)
    for column, size in zip(columns, natural, strict=True):
        table.add_column(column, width=size if fits else None)
    for row in cells:
        table.add_row(*(Text(cell) for cell in row))  # as written: "[x]" is no markup
    return table


def record_table(title: str, record: dict[str, Any]) -> Table:
    """One record as two columns, one field per line (a wide record's columns would be
    squeezed to a few letters each in an 80-column terminal)."""
    table = Table(title=title)
    table.add_column("field")
    table.add_column("value")
    for key, value in record.items():
        table.add_row(Text(str(key)), Text(_cell(value)))
    return table


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.3f}"
    return str(value)


# --- commands ----------------------------------------------------------------------------


def output_file(path: Path | None, *, inputs: Iterable[Path | None] = ()) -> None:
    """A file a command will write (None: no file): its folder is created now, before any
    work, and a place that cannot be written fails now, in one line (not as a traceback
    after the work, nor after an export was already recorded in the audit log). It must
    not be one of the command's `inputs`: the output would replace what was read."""
    if path is None:
        return
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; give the name of a file to write")
    if path.exists() and any(s is not None and s.exists() and path.samefile(s) for s in inputs):
        raise InvalidInputError(f"{path} is also an input; write the output to another file")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise InvalidInputError(f"{path}: {blocking} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot create its folder ({error.strerror})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InvalidInputError(f"{path}: not allowed to write there")


def erased_line(count: int, what: str) -> str:
    """What an import says of the `count` `what` ("rows", "images") of patients erased
    from the project that it left out."""
    return f"{count} {what} of erased patients skipped (consent withdrawn)"


def in_use_row(period: workflows.models.InUse | workflows.risk_models.RiskInUse) -> dict[str, Any]:
    """When a model version's period in use began and ended, who began it and how (the
    audit log's action), for `print_versions`."""
    return {
        "since": iso_time(period.since),
        "until": iso_time(period.until),
        "by": period.by,
        "how": period.action,
    }


def print_versions(
    versions: list[dict[str, Any]],
    periods: list[dict[str, Any]],
    *,
    as_json: bool,
    title: str,
    none_yet: str,
    marked: str,
    hidden: Iterable[str] = (),
) -> None:
    """A listing of model versions (`model list`, `risk list`): as JSON, the versions
    and the periods each was in use; else a table of the versions, the column `marked`
    shown as "yes" (True) or its value, "deleted" for a deleted version (its
    `deleted_at`) and blank for the others, `hidden` columns (and `erased_patients`)
    left to the JSON, moments (UTC) to the minute; then a
    table of the periods (`none_yet`: the line for no versions), and lines naming the
    versions trained on the data of patients erased since and those deleted."""
    if as_json:
        print_json({"versions": versions, "in_use": periods})
        return
    if not versions:
        out.print(none_yet)
        return
    left = {*hidden, "deleted_at", "erased_patients"}  # the lines below say these
    shown = [{k: v for k, v in row.items() if k not in left} for row in versions]
    for row, version in zip(shown, versions, strict=True):
        row[marked] = "yes" if row[marked] is True else row[marked] or ""
        if version["deleted_at"]:
            row[marked] = "deleted"
    out.print(table(title, _readable(shown)))
    if periods:
        out.print(table("in use", _readable(periods)))

    def named(rows: Iterable[dict[str, Any]]) -> str:
        return ", ".join(
            " ".join([str(row.get("kind", "")), f"v{row['version']}"]).strip() for row in rows
        )

    kept = [row for row in versions if not row["deleted_at"]]
    erased = named(row for row in kept if row["erased_patients"])
    if erased:
        out.print(
            "trained on the data of patients erased since (erased_patients): "
            f"{erased}; retrain, put a new version in use, and delete these"
        )
    deleted = named(row for row in versions if row["deleted_at"])
    if deleted:
        out.print(f"deleted (their files are gone; kept for the history): {deleted}")


def _readable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `print_versions` for a table 80 columns hold whole: moments (ISO 8601 in
    UTC) to the minute, a risk model's kind and version in one column, names spaced so
    that they wrap in their header (`table`)."""
    moments = {"created_at", "since", "until"}
    readable = []
    for row in rows:
        if "kind" in row:  # a risk model: "survival v2" in one column, not two
            named = {"model": f"{row['kind']} v{row['version']}"}
            row = named | {k: v for k, v in row.items() if k not in ("kind", "version")}
        readable.append(
            {
                k.replace("_", " "): v[:16].replace("T", " ") if k in moments and v else v
                for k, v in row.items()
            }
        )
    return readable


def print_deletion(done: workflows.versions.Deletion, *, as_json: bool) -> None:
    """What `model delete` or `risk delete` removed, or (a dry run) would remove."""
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    verb = "deleted" if done.deleted else "would delete"
    record: dict[str, Any] = {
        "version": done.version,
        "model folder files": ", ".join(done.files) or "none",
        **done.rows,
        "blob store files": done.blobs,
    }
    out.print(record_table(f"{verb} model {done.version} of {done.project}", record))
    out.print("its row stays, marked deleted: list and history still show it")
    if not done.deleted:
        out.print("dry run: nothing was deleted; run again with --yes to delete")
