"""A cohort's risk and effects model versions: `risk list`, `risk use` (roll back)."""

from __future__ import annotations

from typing import Annotated

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    ProjectOpt,
    iso_time,
    out,
    print_json,
    table,
    workspace,
)
from medloop.cli.models import erased_note
from medloop.cli.precision import risk_app


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
        }
        for r in rows
    ]
    periods = [
        {
            "as": p.role,
            "kind": p.kind,
            "version": p.version,
            "since": iso_time(p.since),
            "until": iso_time(p.until),
            "by": p.by,
            "how": p.action,
        }
        for p in history
    ]
    if as_json:
        print_json({"versions": versions, "in_use": periods})
        return
    if not versions:
        out.print(f"cohort {project!r} has no trained model yet")
        return
    shown = [{k: v for k, v in row.items() if k != "metrics"} for row in versions]
    for row in shown:
        row["in_use_as"] = row["in_use_as"] or ""
    out.print(table(f"model versions of {project}", shown))
    if periods:
        out.print(table("in use", periods))
    marked = [f"{row['kind']} v{row['version']}" for row in versions if row["erased_patients"]]
    if marked:
        out.print(erased_note(marked))


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
