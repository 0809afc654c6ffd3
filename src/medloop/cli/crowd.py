"""Crowd commands: `aggregate` (a CSV file or a project's answers) and `plan` (who is
asked next: lay annotators or a doctor)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    JsonOpt,
    ProjectOpt,
    app,
    console,
    out,
    output_file,
    print_json,
    record_table,
    table,
    workspace,
)
from medloop.exceptions import InvalidInputError
from medloop.types import DEFAULT_AGGREGATION, AggregationMethod, look_up_option


@app.command()
def aggregate(
    answers: Annotated[
        Path | None, typer.Argument(help="answers CSV (task,worker,label); or use --project.")
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    method: Annotated[
        str | None,
        typer.Option(help=f"{', '.join(AggregationMethod)} (default: {DEFAULT_AGGREGATION})."),
    ] = None,
    gold: Annotated[Path | None, typer.Option(help="Known labels CSV (task,label).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write task,label,p_* CSV.")] = None,
    evaluate: Annotated[
        Path | None,
        typer.Option(help="Truth CSV to score only (tasks known to the fit are left out)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Aggregate answers into consensus labels (a CSV file, or a project's crowd answers)."""
    started = time.perf_counter()
    if answers is not None and project is not None:
        raise InvalidInputError("give an ANSWERS.csv file or --project, not both")
    if answers is None and project is None:
        raise InvalidInputError("give an ANSWERS.csv file, or --project to aggregate its answers")
    output_file(output, inputs=(answers, gold, evaluate))
    if project is not None:
        with workspace() as ws:
            result = workflows.aggregate(ws, project=project, method=method)
    else:
        assert answers is not None
        result = workflows.aggregate_file(answers, method=method, gold=gold)
    probabilities, labels = result.probabilities, result.labels
    report: dict[str, Any] = {
        "method": look_up_option(method or DEFAULT_AGGREGATION, AggregationMethod).value,
        "tasks": len(labels),
    }
    if output is not None:
        frame = probabilities.add_prefix("p_")
        frame.insert(0, "label", labels)
        frame.rename_axis("task").to_csv(output)
        report["output"] = str(output)
    if evaluate is not None:
        report.update(
            workflows.score_labels(
                labels, truth_csv=evaluate, classes=probabilities.columns, known=result.known
            )
        )
        if report.get("truth_not_among_classes"):
            console.print(
                f"[yellow]warning:[/] {report['truth_not_among_classes']} scored task(s) have "
                f"a truth label none of the answers uses ({evaluate}): a typo scores as wrong"
            )
    report["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        print_json(report)
    else:
        out.print(record_table("aggregation", report))


@app.command()
def plan(
    project: ProjectOpt,
    budget: Annotated[float, typer.Option(help="What may be spent, in the unit of the costs.")],
    lay_cost: Annotated[float, typer.Option(help="Cost of one lay answer.")] = 1.0,
    doctor_cost: Annotated[float, typer.Option(help="Cost of one doctor's review.")] = 20.0,
    doctor_accuracy: Annotated[float, typer.Option(help="How often a doctor is right.")] = 0.97,
    max_lay_answers: Annotated[int, typer.Option(help="Most lay answers asked per item.")] = 5,
    limit: Annotated[int, typer.Option(min=1, help="Requests to show.")] = 20,
    output: Annotated[Path | None, typer.Option(help="Write every request as CSV.")] = None,
    publish: Annotated[
        bool,
        typer.Option(
            help="Open the requests for people: labelling tasks for more lay answers, "
            "review requests at the head of the doctors' queue."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Plan the next labelling requests: more lay answers or a doctor for each open item,
    whichever removes more expected errors per unit of cost, within --budget."""
    output_file(output)
    with workspace() as ws:
        result = workflows.plan_requests(
            ws,
            project=project,
            budget=budget,
            lay_cost=lay_cost,
            doctor_cost=doctor_cost,
            doctor_accuracy=doctor_accuracy,
            max_lay_answers=max_lay_answers,
        )
        published = (
            workflows.publish_plan(ws, project=project, plan=result, actor=CLI_ACTOR)
            if publish
            else None
        )
    summary: dict[str, Any] = result.summary()
    if published is not None:
        summary.update(dataclasses.asdict(published))
    if output is not None:
        result.requests.to_csv(output)
        summary["output"] = str(output)
    rows = result.requests.head(limit).reset_index().to_dict(orient="records")
    if as_json:
        print_json({**summary, "requests": rows})
        return
    out.print(record_table("labelling plan", summary))
    if rows:
        out.print(table(f"requests, most worth asking first ({len(rows)} shown)", rows))
