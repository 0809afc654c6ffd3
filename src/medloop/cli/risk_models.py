"""A cohort's risk and effects model versions: `risk list`, `risk use` (roll back),
`risk delete`."""

from __future__ import annotations

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
    print_deletion,
    print_versions,
    workspace,
)
from medloop.cli.precision import risk_app
from medloop.times import iso_time


@risk_app.command("list")
def list_models(project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """The cohort's risk, effects and expression model versions, those in use marked
    (as its risk model, or its effects model); then when each was put in use, and by
    whom (the audit log's train_risk, train_effects and risk_model.use)."""
    with workspace() as ws:
        rows = workflows.risk_models.list_risk_models(ws, project=project)
        history = workflows.risk_models.risk_model_history(ws, project=project)
    versions = [
        {
            "kind": r.kind,
            "version": r.version,
            "method": r.method,
            "in_use_as": r.in_use_as,
            "created_at": iso_time(r.created_at),
            "n_train": r.n_train,
            "features": r.features,
            "metrics": r.metrics,
            "erased_patients": r.erased_patients,
            "deleted_at": iso_time(r.deleted_at),
        }
        for r in rows
    ]
    periods = [
        {"as": p.role, "kind": p.kind, "version": p.version, **in_use_row(p)} for p in history
    ]
    print_versions(
        versions,
        periods,
        as_json=as_json,
        title=f"model versions of {project}",
        none_yet=f"cohort {project!r} has no trained model yet",
        marked="in_use_as",
        hidden=["metrics"],
    )


@risk_app.command("use")
def use(
    project: ProjectOpt,
    kind: Annotated[str, typer.Argument(help="survival, classification or effects.")],
    version: Annotated[int, typer.Argument(help="The version of that kind to put in use.")],
) -> None:
    """Put a risk or effects model version in use (roll back to an earlier one after a
    bad retraining): the patient pages, `recommend` and `risk predict` use it from now
    on (audited). The next training of its kind is put in use in its turn."""
    with workspace() as ws:
        before = workflows.risk_models.use_risk_model(
            ws, project=project, kind=kind, version=version, actor=CLI_ACTOR
        )
    was = "none" if before is None else f"{before[0]} v{before[1]}"
    if before == (kind, version):
        out.print(f"{kind} model v{version} of {project!r} is already in use")
    else:
        out.print(f"{kind} model v{version} of {project!r} in use (was {was})")


@risk_app.command("delete")
def delete(
    project: ProjectOpt,
    kind: Annotated[str, typer.Argument(help="survival, classification, effects or expression.")],
    version: Annotated[int, typer.Argument(help="The version of that kind to delete.")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a risk, effects or expression model version's file (a pickled model that
    keeps per-patient rows, e.g. of patients erased since); its row stays, marked
    deleted, so `risk list` still shows when it was in use and recommendations name it
    (audited). A version in use is refused: put another in use first. A dry run unless
    --yes."""
    with workspace() as ws:
        done = workflows.risk_models.delete_risk_model(
            ws, project=project, kind=kind, version=version, actor=CLI_ACTOR, dry_run=not yes
        )
    print_deletion(done, as_json=as_json)
