"""Model versions of a project: `model list`, `model use` (roll back), `model delete`,
`model labels`.

`model export` lives in `cli.inference` beside `predict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    ProjectOpt,
    YesOpt,
    in_use_row,
    out,
    output_file,
    print_deletion,
    print_versions,
    workspace,
)
from medloop.cli.inference import model_app
from medloop.times import iso_time


@model_app.command("list")
def list_models(project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """The project's model versions, the one in use marked, with what they learned from;
    then when each was put in use, and by whom (the audit log's model.train and model.use)."""
    with workspace() as ws:
        rows = workflows.models.list_models(ws, project=project)
        history = workflows.models.model_history(ws, project=project)
    versions = [
        {
            "version": r.version,
            "in_use": r.in_use,
            "created_at": iso_time(r.created_at),
            "round": r.round,
            "n_train": r.n_train,
            "val_auc": r.val_auc,
            "test_auc": r.test_auc,
            "seed": r.seed,
            "labels_digest": r.labels_digest,
            "training_labels": r.training_labels,
            "erased_patients": r.erased_patients,
            "deleted_at": iso_time(r.deleted_at),
        }
        for r in rows
    ]
    periods = [{"version": p.version, **in_use_row(p)} for p in history]
    print_versions(
        versions,
        periods,
        as_json=as_json,
        title=f"model versions of {project}",
        none_yet=f"project {project!r} has no trained model yet",
        marked="in_use",
        hidden=["seed", "labels_digest", "training_labels"],
    )


@model_app.command("use")
def use(
    project: ProjectOpt,
    version: Annotated[int, typer.Argument(help="The model version to put in use.")],
) -> None:
    """Put a model version in use (roll back to an earlier one after a bad retraining):
    the review queue, task order and `predict PROJECT` use it from now on (audited). The
    next training's version is put in use in its turn."""
    with workspace() as ws:
        before = workflows.models.use_model(ws, project=project, version=version, actor=CLI_ACTOR)
    if before == version:
        out.print(f"model version {version} of {project!r} is already in use")
    else:
        out.print(f"model version {version} of {project!r} in use (was {before})")


@model_app.command("delete")
def delete(
    project: ProjectOpt,
    version: Annotated[int, typer.Argument(help="The model version to delete.")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a model version's checkpoint (e.g. one trained on the images of patients
    erased since), its Grad-CAM overlays and its predictions; its row stays, marked
    deleted, so `model list` still shows when it was in use (audited). The version in
    use is refused: put another in use first. A dry run unless --yes."""
    with workspace() as ws:
        done = workflows.models.delete_model(
            ws, project=project, version=version, actor=CLI_ACTOR, dry_run=not yes
        )
    print_deletion(done, as_json=as_json)


@model_app.command("labels")
def labels(
    project: ProjectOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help="CSV file to write.")],
    version: Annotated[
        int | None, typer.Option(help="Model version (default: the one in use).")
    ] = None,
) -> None:
    """Write the labels a model version learned from (and the doctors' labels it was
    chosen on) as CSV: item, source_ref, split, kind, label, class, probabilities, source,
    method, decided_by, round, labelled_at, label_id (audited)."""
    output_file(output)
    with workspace() as ws:
        frame = workflows.models.training_labels(
            ws, project=project, version=version, actor=CLI_ACTOR
        )
    frame.to_csv(output, index=False)
    out.print(f"wrote {len(frame)} training labels to {output}")
