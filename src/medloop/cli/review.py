"""`medloop review`: the doctor's review queue and decisions, a final label's correction
and history, as the web's review pages show them (`workflows.review`)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    ProjectOpt,
    app,
    out,
    print_json,
    table,
    workspace,
)
from medloop.exceptions import InvalidInputError
from medloop.times import iso_time, utc_text
from medloop.types import REVIEWER_ROLES

if TYPE_CHECKING:
    from medloop.workflows.accounts import Account

review_app = typer.Typer(
    help="The doctor's review queue, decisions and corrections of final labels.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

DoctorOpt = Annotated[
    str | None,
    typer.Option(help="Deciding doctor's username (an existing doctor or admin)."),
]
ItemArg = Annotated[int, typer.Argument(help="Item id.")]


@review_app.callback(invoke_without_command=True)
def review(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Queue rows to show.")] = 20,
    item: Annotated[int | None, typer.Option(help="Item id to decide.")] = None,
    label: Annotated[str | None, typer.Option(help="Class name for --item.")] = None,
    doctor: DoctorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the doctor's review queue, or record a decision with --item and --label.

    The queue is the web's: items a labelling plan asked a doctor about first, then the
    most uncertain, with open flags; a two-class model's suggestion comes with its
    P(second class) and the cut it decides at, and the model in use is named below (as
    the review page's model card: version, when trained, held-out test figures, final
    labels signed since). --json gives {"queue": [...], "model": {...} or null}."""
    if ctx.invoked_subcommand is not None:
        if project or item is not None or label or doctor or as_json:
            raise InvalidInputError(
                f"give the options after `review {ctx.invoked_subcommand}`, not before it"
            )
        return
    if project is None:
        raise InvalidInputError("give the project: medloop review -p PROJECT")
    with workspace() as ws:
        if item is not None:
            if label is None:
                raise InvalidInputError("--item needs --label")
            classes = workflows.project_classes(ws, project=project)
            if label not in classes:
                raise InvalidInputError(f"label {label!r} is not one of {classes}")
            account = _doctor(ws, doctor, "--item")
            workflows.review.decide(
                ws, account=account, item_id=item, label=label, project=project
            )  # refuses an item that already has a final label, as the web does
            out.print(f"item {item}: final label {label!r} by {doctor}")
            return
        if label is not None or doctor is not None:
            raise InvalidInputError("--label and --doctor decide an --item; give --item ITEM")
        entries = workflows.review.review_entries(ws, project=project, limit=limit)[:limit]
        model = workflows.review.model_summary(ws, project=project)
    rows = [_entry_row(entry) for entry in entries]
    if as_json:
        print_json({"queue": rows, "model": _model_json(model)})
        return
    if rows:
        out.print(table(f"review queue ({len(rows)} shown)", [_queue_row(r) for r in rows]))
    else:
        out.print("the review queue is empty")
    out.print(model_line(model))


@review_app.command("correct")
def correct(
    project: ProjectOpt,
    item: ItemArg,
    label: Annotated[str, typer.Argument(help="The new final label (a class name).")],
    reason: Annotated[str, typer.Option(help="Why (kept with the label and in the audit log).")],
    was: Annotated[str, typer.Option(help="The final label you are correcting (as you saw it).")],
    doctor: DoctorOpt = None,
) -> None:
    """Correct an item's signed final label (a slip, a second look): the old label stays
    in the item's history, the correction is audited and the next model learns the new
    label. Refused if the final label is no longer --was (changed meanwhile)."""
    with workspace() as ws:
        account = _doctor(ws, doctor, "a correction")
        workflows.review.correct(
            ws,
            account=account,
            item_id=item,
            label=label,
            replaces=was,
            reason=reason,
            project=project,
        )
    out.print(f"item {item}: final label corrected from {was!r} to {label!r} by {doctor}")


@review_app.command("history")
def history(project: ProjectOpt, item: ItemArg, as_json: JsonOpt = False) -> None:
    """An item's final labels, oldest first: who signed or corrected each, when, and why
    (the last is the current one)."""
    with workspace() as ws:
        events = workflows.review.label_history(ws, item_id=item, project=project, actor=CLI_ACTOR)
    rows = [
        {
            "label": e.label,
            "by": e.by or "the dataset's gold label",
            "at": utc_text(e.at) if e.by else None,
            "replaced": e.replaced,
            "reason": e.reason,
        }
        for e in events
    ]
    if as_json:
        print_json(rows)
    elif not rows:
        out.print(f"item {item} has no final label yet")
    else:
        shown = [{k: "-" if v is None else v for k, v in row.items()} for row in rows]
        out.print(table(f"final labels of item {item}", shown))


def _doctor(ws: workflows.Workspace, username: str | None, needs: str) -> Account:
    """The account of the doctor (or admin) `username`, which `needs` names."""
    if not username:
        raise InvalidInputError(f"{needs} needs --doctor USERNAME: the deciding doctor")
    return workflows.accounts.account_in_role(ws, username=username, roles=REVIEWER_ROLES)


def _entry_row(entry: workflows.review.ReviewEntry) -> dict[str, Any]:
    """A queue entry as JSON: the item, the crowd's and the model's opinions (class
    names; a two-class model's P(`positive_class`) and its cut), the score, why it is
    there, and whether a doctor was asked or it is flagged."""
    return {
        "item": entry.item_id,
        "crowd_label": entry.crowd_label,
        "crowd_confidence": entry.crowd_confidence,
        "model_label": entry.model_label,
        "model_confidence": entry.model_confidence,
        "model_positive": entry.model_positive,
        "model_threshold": entry.model_threshold,
        "positive_class": entry.positive_class,
        "score": entry.score,
        "reason": entry.reason,
        "requested": entry.requested,
        "flag": entry.flag_reason,
    }


def _model_json(model: workflows.review.ModelSummary | None) -> dict[str, Any] | None:
    """The model in use as JSON, with the fields of the review API's model summary."""
    if model is None:
        return None
    return {**dataclasses.asdict(model), "trained_at": iso_time(model.trained_at)}


def _queue_row(row: dict[str, Any]) -> dict[str, Any]:
    """A queue row as a doctor reads it (as the review page words it): the opinions
    with their confidence, the score and why the item is there (a flag's reason after
    it; the JSON keeps every field)."""
    why = row["reason"] if row["flag"] is None else f"{row['reason']}; flagged: {row['flag']}"
    return {
        "item": row["item"],
        "crowd": _opinion(row["crowd_label"], row["crowd_confidence"]),
        "model": model_opinion(row),
        "score": row["score"],
        "why": why,
    }


def _opinion(label: str | None, confidence: float | None) -> str:
    return "-" if label is None or confidence is None else f"{label} ({100 * confidence:.0f}%)"


def model_opinion(row: dict[str, Any]) -> str:
    """The model's suggestion: a two-class model's with P(positive class) and the cut it
    decides at ("normal (P(pneumonia) 74%, cut 79%)": below the cut, whatever 50% says),
    another's with the probability of the class it suggests."""
    if row["model_label"] is None or row["model_threshold"] is None:
        return _opinion(row["model_label"], row["model_confidence"])
    positive, cut = 100 * row["model_positive"], 100 * row["model_threshold"]
    return f"{row['model_label']} (P({row['positive_class']}) {positive:.0f}%, cut {cut:.0f}%)"


def model_line(model: workflows.review.ModelSummary | None) -> str:
    """The model in use as the review page's model card names it: version, when it was
    trained and on how much, its held-out test figures, and the final labels signed
    since (which it has not learnt)."""
    if model is None:
        return "no model yet: only the crowd's opinion is shown"
    text = f"model v{model.version}, trained {utc_text(model.trained_at)} on {model.n_train} images"
    if model.test_auc is not None:
        text += f"; held-out test AUC {model.test_auc:.2f}"
        if model.test_accuracy is not None:
            text += f", accuracy {100 * model.test_accuracy:.0f}%"
        if model.test_n:
            text += f" ({model.test_n} images)"
    if model.threshold is not None:
        text += f"; suggests {model.positive_class} at P >= {100 * model.threshold:.0f}%"
    if model.labels_since:
        many = model.labels_since != 1
        text += (
            f"; {model.labels_since} final label{'s' if many else ''} signed since it was "
            f"trained: it has not learnt from {'them' if many else 'it'}"
        )
    return text + "."
