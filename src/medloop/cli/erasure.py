"""Erasure at a person's request: `patients erase` (a patient withdraws consent) and
`users erase` (a volunteer leaves). Both are dry runs unless given --yes; both are
audited under the actor "cli"."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    ProjectOpt,
    YesOpt,
    out,
    print_json,
    record_table,
    workspace,
)
from medloop.cli.precision import patients_app
from medloop.cli.web import users_app

ReasonOpt = Annotated[
    str,
    typer.Option(help="Why (e.g. 'consent withdrawn, request 2026-14'); audited: no names."),
]


@patients_app.command("erase")
def patients_erase(
    patient: Annotated[str, typer.Argument(help="The patient's pseudonym or imported id.")],
    project: ProjectOpt,
    reason: ReasonOpt,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase a patient from a project (consent withdrawn): their facts, features,
    recommendations and decisions, images with their files (a file another item shares
    stays), and the tasks, answers and labels on those images. Models trained on their
    data are marked, not deleted: retrain them, then `model delete` / `risk delete`
    them. A dry run unless --yes."""
    with workspace() as ws:
        done = workflows.erasure.erase_patient(
            ws, project=project, patient=patient, reason=reason, actor=CLI_ACTOR, dry_run=not yes
        )
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    verb = "erased" if done.erased else "would erase"
    counts: dict[str, int] = dict(done.rows)
    counts["files deleted" if done.erased else "files to delete"] = done.blobs - done.blobs_kept
    counts["files shared with other items (kept)"] = done.shared_blobs
    out.print(record_table(f"{verb} patient {done.pseudonym} of {project}", counts))
    models = [f"image model v{v}" for v in done.image_models]
    models += [f"{m} model" for m in done.risk_models]
    if models:
        out.print(
            f"trained on this patient's data, marked (not deleted): {', '.join(models)}; "
            "retrain (medloop train / risk train), put the new version in use, then "
            "delete these files (medloop model delete -p PROJECT VERSION / medloop risk "
            "delete -p PROJECT KIND VERSION)"
        )
    if done.exports:
        out.print(
            f"{done.exports} exports of {project!r} were written since this patient's data "
            "arrived (audit log: export.*, model.labels); medloop cannot erase those files"
        )
    if done.other_projects:
        out.print(f"the same patient is in: {', '.join(done.other_projects)} (erase there too)")
    if done.blobs_kept:
        out.print(f"{done.blobs_kept} files were stored again meanwhile and kept (store gc)")
    out.print(
        f"backups taken before now still hold the data; so do the source files, but "
        f"imports into {project!r} leave this patient out from now on"
    )
    if not done.erased:
        out.print("dry run: nothing was erased; run again with --yes to erase")


@users_app.command("erase")
def users_erase(
    name: Annotated[str, typer.Argument(help="Username.")],
    reason: ReasonOpt,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase a lay annotator who leaves: the account is disabled for good and its
    username replaced by a pseudonym everywhere (audit log, jobs); answers stay, under
    the pseudonym, so labels and models stay reproducible. Doctors and admins are
    disabled instead (their names are part of the record). A dry run unless --yes."""
    with workspace() as ws:
        done = workflows.accounts.erase_user(
            ws, username=name, reason=reason, actor=CLI_ACTOR, dry_run=not yes
        )
    if as_json:
        print_json(dataclasses.asdict(done))
        return
    verb = "erased" if done.erased else "would erase"
    counts = {
        "pseudonym": done.pseudonym,
        "audit entries renamed": done.audit_entries,
        "jobs renamed": done.jobs,
        "answers kept under the pseudonym": done.answers,
        "project memberships removed": done.memberships,
        "held tasks released": done.holds,
        "skips removed": done.skips,
    }
    out.print(record_table(f"{verb} user {done.username!r}", counts))
    out.print("exports written before name the person; medloop cannot erase those files")
    if not done.erased:
        out.print("dry run: nothing was changed; run again with --yes to erase")
