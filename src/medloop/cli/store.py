"""Commands on the stored files: `store verify` (rows against their blobs and model
checkpoints), `store gc` (blobs no row names, checkpoints of trainings never stored or
named by no version) and `store backup` (a consistent copy of the home)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    app,
    out,
    print_json,
    progress_bar,
    table,
    workspace,
)
from medloop.types import DEFAULT_BLOB_GRACE_HOURS

if TYPE_CHECKING:
    from rich.table import Table

store_app = typer.Typer(
    help="Check the stored images and files against the database, tidy them, back them up.",
    no_args_is_help=True,
)
app.add_typer(store_app, name="store")


@store_app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Check that every blob a row names (an item's image and DICOM file, a risk model)
    is present and matches its sha256, and every image model version's checkpoint the
    sha256 recorded when it was trained; list the missing or damaged ones by item, and
    by project and version. Exits with status 1 when any is. Checkpoints of versions
    trained before digests were recorded are listed as unverified (no failure)."""
    with workspace() as ws, progress_bar() as progress:
        report = workflows.storage.verify_blobs(ws, progress=progress)
        models = workflows.storage.verify_checkpoints(ws, progress=progress)
    problems = [dataclasses.asdict(p) for p in report.problems]
    findings = [dataclasses.asdict(f) for f in models.findings]
    states = workflows.checkpoints.CheckpointState
    if as_json:
        print_json(
            {
                "blobs": report.blobs,
                "references": report.references,
                "missing": report.missing,
                "damaged": report.damaged,
                "problems": problems,
                "checkpoints": {
                    "checked": models.checkpoints,
                    **{s.value: models.count(s) for s in states if s is not states.OK},
                    "findings": findings,
                },
            }
        )
    else:
        if problems:
            out.print(table("blobs missing or damaged", problems))
        if findings:
            out.print(table("model checkpoints missing, damaged or unverified", findings))
        out.print(
            f"checked {report.blobs} blobs named {report.references} times: "
            f"{report.missing} missing, {report.damaged} damaged"
        )
        out.print(
            f"checked {models.checkpoints} model checkpoints: "
            f"{models.count(states.MISSING)} missing, {models.count(states.DAMAGED)} damaged, "
            f"{models.count(states.UNVERIFIED)} unverified (trained before digests were kept)"
        )
        if problems:
            out.print(
                "restore the files from a backup, or ingest their source folder into a "
                "new project (the same content is the same blob, written anew)"
            )
        if models.problems:
            out.print(
                "restore the checkpoints from a backup, or put another version in use "
                "(medloop model use -p PROJECT VERSION)"
            )
    if problems or models.problems:
        raise typer.Exit(1)


@store_app.command("gc")
def gc(
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the unused files older than the grace.")
    ] = False,
    grace_hours: Annotated[
        float,
        typer.Option(
            min=0,
            help="Keep unused files younger than this many hours: an import running now "
            "writes its blobs shortly before committing the rows that name them, a "
            "training its checkpoint shortly before storing its version.",
        ),
    ] = DEFAULT_BLOB_GRACE_HOURS,
    as_json: JsonOpt = False,
) -> None:
    """List the blobs no row names (left by an import that failed or was interrupted),
    the checkpoints of trainings that never finished (killed) and the version
    checkpoints (vN.pt) no model version names (a crash while storing one, a database
    restored to an earlier copy); with --delete, delete those older than the grace
    period (audited)."""
    with workspace() as ws, progress_bar() as progress:
        report = workflows.storage.collect_garbage(
            ws, grace_hours=grace_hours, delete=delete, actor=CLI_ACTOR, progress=progress
        )
    if as_json:
        print_json(
            {
                "files": report.files,
                "grace_hours": report.grace_hours,
                "unused": len(report.unused),
                "within_grace": report.within_grace,
                "deleted": report.deleted,
                "deleted_bytes": report.deleted_bytes,
                "blobs": [dataclasses.asdict(u) for u in report.unused],
                "unfinished_checkpoints": [dataclasses.asdict(u) for u in report.unfinished],
                "deleted_checkpoints": report.deleted_checkpoints,
                "deleted_checkpoint_bytes": report.deleted_checkpoint_bytes,
                "orphan_checkpoints": [dataclasses.asdict(u) for u in report.orphans],
                "deleted_orphans": report.deleted_orphans,
                "deleted_orphan_bytes": report.deleted_orphan_bytes,
            }
        )
        return
    if report.unused:
        rows = [
            {
                "blob": u.sha256 or f"{u.name} (unfinished write)",
                "bytes": u.size,
                "age (hours)": round(u.age_hours, 1),
                "deleted": "yes" if u.deleted else "no",
            }
            for u in report.unused
        ]
        out.print(table("blobs no row names", rows))
    unused_bytes = sum(u.size for u in report.unused)
    out.print(
        f"{len(report.unused)} of {report.files} stored files are named by no row "
        f"({unused_bytes} bytes); {report.within_grace} are younger than "
        f"{report.grace_hours:g} hours and kept"
    )
    if report.unfinished:
        out.print(_checkpoint_table("checkpoints of trainings never stored", report.unfinished))
        out.print(
            f"{len(report.unfinished)} unfinished checkpoints; "
            f"{report.checkpoints_within_grace} are younger than {report.grace_hours:g} hours "
            "(a training may be under way) and kept"
        )
    if report.orphans:
        out.print(_checkpoint_table("checkpoints no model version names", report.orphans))
        out.print(
            f"{len(report.orphans)} orphan checkpoints; {report.orphans_within_grace} are "
            f"younger than {report.grace_hours:g} hours (a training may be storing one) and kept"
        )
    if delete:
        out.print(f"deleted {report.deleted} ({report.deleted_bytes} bytes)")
        if report.unfinished:
            out.print(
                f"deleted {report.deleted_checkpoints} unfinished checkpoints "
                f"({report.deleted_checkpoint_bytes} bytes)"
            )
        if report.orphans:
            out.print(
                f"deleted {report.deleted_orphans} orphan checkpoints "
                f"({report.deleted_orphan_bytes} bytes)"
            )
    elif (
        len(report.unused) > report.within_grace
        or len(report.unfinished) > report.checkpoints_within_grace
        or len(report.orphans) > report.orphans_within_grace
    ):
        out.print("run again with --delete to delete the older ones")


def _checkpoint_table(title: str, files: list[workflows.storage.CheckpointFile]) -> Table:
    rows = [
        {
            "checkpoint": u.name,
            "bytes": u.size,
            "age (hours)": round(u.age_hours, 1),
            "deleted": "yes" if u.deleted else "no",
        }
        for u in files
    ]
    return table(title, rows)


@store_app.command("backup")
def backup(
    target: Annotated[Path, typer.Argument(help="A new (or empty) folder to copy the home to.")],
    as_json: JsonOpt = False,
) -> None:
    """Copy the home (SQLite database, models, blobs) into TARGET, consistently while
    servers run; restore by pointing MEDLOOP_HOME at it, with the same
    MEDLOOP_SECRET_KEY. On PostgreSQL, pg_dump the database first: this copies the files.
    Blobs and model checkpoints are checked against their sha256 on the way: a damaged
    one is named and left out. Exits with status 1 when a file the database names could
    not be copied whole."""
    with workspace() as ws, progress_bar() as progress:
        report = workflows.backup.back_up(ws, target=target, progress=progress)
    if as_json:
        print_json(
            {
                "target": str(report.target),
                "database": report.database,
                "blobs": report.blobs,
                "blob_bytes": report.blob_bytes,
                "model_files": report.model_files,
                "missing": report.missing,
                "damaged": report.damaged,
                "damaged_models": report.damaged_models,
            }
        )
    else:
        copied = "the database, " if report.database else ""
        out.print(
            f"copied {copied}{report.model_files} model files and {report.blobs} blobs "
            f"({report.blob_bytes} bytes) to {report.target}"
        )
        if not report.database:
            out.print("the database is PostgreSQL: keep the pg_dump taken before this command")
        for sha in report.damaged:
            out.print(f"damaged, not copied: blob {sha} (medloop store verify names its rows)")
        for name in report.damaged_models:
            out.print(
                f"damaged, not copied: model checkpoint {name} (no longer matches the sha256 "
                "recorded when it was trained; medloop store verify names its version)"
            )
        for name in report.missing:
            out.print(f"missing from the copy: {name}")
    if not report.complete:
        raise typer.Exit(1)
