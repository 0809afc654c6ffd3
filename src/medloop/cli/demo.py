"""`medloop demo`: a fresh demo home with real data, people and history, then the web."""

from __future__ import annotations

import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from medloop.cli.common import SeedOpt, app, console, out, progress_bar
from medloop.cli.loop import round_table
from medloop.cli.web import run_server
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.types import Role
from medloop.workflows.demo import (
    PATIENTS_TODO,
    DemoOptions,
    DemoResult,
    demo_settings,
    prepare_demo,
)

if TYPE_CHECKING:
    from medloop.workflows import RoundReport

DEFAULTS = DemoOptions()


@app.command()
def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="Demo home, replaced on every run (default: MEDLOOP_HOME/demo)."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="A seeded random sample of N images per split (default all).")
    ] = DEFAULTS.limit,
    rounds: Annotated[int, typer.Option(help="Simulated rounds of the loop.")] = DEFAULTS.rounds,
    per_round: Annotated[
        int, typer.Option(help="New items the simulated crowd labels per round.")
    ] = DEFAULTS.per_round,
    doctor_budget: Annotated[
        int, typer.Option(help="Simulated doctor reviews per round.")
    ] = DEFAULTS.doctor_budget,
    tasks: Annotated[
        int, typer.Option(help="Open labelling tasks published for people.")
    ] = DEFAULTS.open_tasks,
    max_epochs: Annotated[
        int | None, typer.Option(help="Upper bound on training epochs per round.")
    ] = DEFAULTS.max_epochs,
    patients: Annotated[
        bool, typer.Option(help="Add the GBSG2 breast-cancer cohort for /patients.")
    ] = DEFAULTS.patients,
    seed: SeedOpt = DEFAULTS.seed,
    host: Annotated[str, typer.Option(help="Interface to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to serve on.")] = 8000,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the web platform when ready.")
    ] = True,
) -> None:
    """Try medloop as a new user: a fresh home with PneumoniaMNIST, a simulated crowd and
    doctor, a first model, demo accounts for each role and open tasks, then the web."""
    if serve:
        _check_port(host, port)  # before minutes of preparation, not after
    settings = demo_settings(Settings(), home=home)
    options = DemoOptions(
        limit=limit,
        rounds=rounds,
        per_round=per_round,
        doctor_budget=doctor_budget,
        open_tasks=tasks,
        max_epochs=max_epochs,
        patients=patients,
        seed=seed,
    )
    console.rule("medloop demo: lay annotators + doctors + a model, on PneumoniaMNIST")
    console.print(f"preparing a fresh demo home in {settings.home.resolve()}")
    rows: list[dict[str, Any]] = []

    def on_round(report: RoundReport) -> None:
        rows.append(report.as_dict())

    with progress_bar() as progress:
        result = prepare_demo(settings, options=options, progress=progress, on_round=on_round)
    if rows:
        out.print(round_table(rows))
    out.print(_summary(result))
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    out.print(_welcome(result, url=url, serving=serve))
    if serve:
        run_server(settings, host=host, port=port)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InvalidInputError(
                f"cannot serve on {host}:{port} ({error.strerror}); is another medloop "
                "running? Stop it, or choose another --port"
            ) from None


def _summary(result: DemoResult) -> Text:
    ingest = result.ingest
    lines = [
        f"Ingested {ingest.items} chest X-rays of PneumoniaMNIST "
        f"(train {ingest.splits['train']}, val {ingest.splits['val']}, "
        f"test {ingest.splits['test']}).",
    ]
    if result.rounds:
        last = result.rounds[-1]
        lines.append(
            f"After {len(result.rounds)} simulated round(s): {last.labelled_items} images labelled "
            f"by {last.crowd_answers} lay answers and {last.doctor_labels} doctor reviews; "
            f"label accuracy {last.consensus_accuracy:.3f} (majority vote "
            f"{last.majority_vote_accuracy:.3f}, with the same doctor reviews "
            f"{last.majority_vote_doctors_accuracy:.3f}); model v{last.model_version} test AUC "
            f"{last.test_auc:.3f}, accuracy {last.test_acc:.3f}."
        )
    lines.append(
        f"Published {result.published.tasks} open labelling tasks for people "
        f"({result.published.gold_tasks} gold questions)."
    )
    if not result.published.tasks:
        lines.append(
            "The simulated rounds labelled every image, so people have nothing to label: "
            "run the demo with a larger --limit, or fewer --rounds or --per-round."
        )
    if result.cohort is not None:
        lines.append(
            f"Patients: {result.cohort.patients} of the GBSG2 breast-cancer trial in "
            f"{result.cohort.project!r}, with a risk and a hormone-therapy effect model."
        )
    if result.learning_curve is not None:
        lines.append(f"Learning curve: {result.learning_curve.resolve()}")
    return Text("\n".join(lines))


def _welcome(result: DemoResult, *, url: str, serving: bool) -> Panel:
    logins = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("role", "username", "password"):
        logins.add_column(column, no_wrap=True)
    pages = Table.grid(padding=(0, 2))
    pages.add_column(no_wrap=True)
    pages.add_column(no_wrap=True)
    pages.add_column()
    for account in result.accounts:
        logins.add_row(str(account.role), account.username, f"[bold green]{account.password}[/]")
        pages.add_row(str(account.role), account.page, account.todo)
        if account.role == Role.DOCTOR and result.cohort is not None:
            pages.add_row("", "/patients", PATIENTS_TODO)
    home = result.home.resolve()
    serve = f"MEDLOOP_HOME={home} {_program()} serve"
    if serving:
        top = f"Open [bold]{url}[/] and sign in (passwords are shown only this once):"
        footer = (
            "Sign out (top right) to switch roles. [bold]Ctrl+C[/] stops the server.\n"
            f"Serve this demo again: {serve}\n"
            "Run `medloop demo` again for a fresh one (it replaces this home)."
        )
    else:
        top = "Demo accounts (passwords are shown only this once):"
        footer = f"Not serving (--no-serve). Serve it: {serve}"
    body = Table.grid(padding=(1, 0))
    for part in (Text.from_markup(top), logins, pages, Text.from_markup(footer)):
        body.add_row(part)
    return Panel(body, title=f"medloop demo ready: {url}", subtitle=str(home), expand=False)


def _program() -> str:
    """How this `medloop` was started (e.g. .venv/bin/medloop from `make demo`)."""
    program = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "medloop" else "medloop"
    return shlex.quote(program)
