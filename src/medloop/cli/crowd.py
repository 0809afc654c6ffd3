"""Crowd commands: `aggregate` (a CSV file or a project's answers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from medloop import workflows
from medloop.aggregation import DEFAULT_METHOD, Method
from medloop.cli.common import JsonOpt, app, out, print_json, table, workspace
from medloop.exceptions import InvalidInputError
from medloop.types import look_up_option


@app.command()
def aggregate(
    answers: Annotated[
        Path | None, typer.Argument(help="answers CSV (task,worker,label); or use --project.")
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    method: Annotated[
        str | None,
        typer.Option(help=f"{', '.join(m.value for m in Method)} (default: {DEFAULT_METHOD})."),
    ] = None,
    gold: Annotated[Path | None, typer.Option(help="Known labels CSV (task,label).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write task,label,p_* CSV.")] = None,
    evaluate: Annotated[Path | None, typer.Option(help="Truth CSV to score only.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Aggregate answers into consensus labels (a CSV file, or a project's crowd answers)."""
    started = time.perf_counter()
    if (answers is None) == (project is None):
        raise InvalidInputError("give either an ANSWERS.csv file or --project, not both")
    if project is not None:
        with workspace() as ws:
            result = workflows.aggregate(ws, project=project, method=method)
        probabilities = result.probabilities
    else:
        assert answers is not None
        probabilities = workflows.aggregate_file(answers, method=method, gold=gold)
    labels = probabilities.idxmax(axis=1)
    report: dict[str, Any] = {
        "method": look_up_option(method or DEFAULT_METHOD, Method).value,
        "tasks": len(labels),
    }
    if output is not None:
        frame = probabilities.add_prefix("p_")
        frame.insert(0, "label", labels)
        frame.rename_axis("task").to_csv(output)
        report["output"] = str(output)
    if evaluate is not None:
        report.update(workflows.score_labels(labels, truth_csv=evaluate))
    report["seconds"] = round(time.perf_counter() - started, 3)
    if as_json:
        print_json(report)
    else:
        out.print(table("aggregation", [report]))
