"""Web commands: `serve`, `users` (add, list, disable, enable, set-password, set-role,
revoke-sessions, grant, revoke), `tasks publish` (open tasks for people) and `export
answers|labels|coco`. Account changes, grants of projects and exports are audited under
the actor "cli" (`users add` under "system", as `add_user` records every new account)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medloop import workflows
from medloop.cli.common import (
    CLI_ACTOR,
    STRATEGY_HELP,
    JsonOpt,
    ProjectOpt,
    SeedOpt,
    app,
    console,
    out,
    output_file,
    print_json,
    pseudonymising,
    table,
    workspace,
)
from medloop.config import Settings
from medloop.exceptions import ConfigError, InvalidInputError
from medloop.types import RECOMMENDED_STRATEGY, Role

export_app = typer.Typer(
    help="Write answers or labels as CSV, lesion boxes as COCO JSON.", no_args_is_help=True
)
users_app = typer.Typer(help="People's accounts (admin, doctor, annotator).", no_args_is_help=True)
tasks_app = typer.Typer(help="Labelling tasks for people in the web.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(tasks_app, name="tasks")
app.add_typer(export_app, name="export")


# Idle keep-alive connections stay open this long (uvicorn's default is 5 s). A client
# that reuses a connection just as the server closes it gets a connection error, and an
# answer's POST is not retried by browsers or HTTP clients; clients and proxies keep
# idle connections for 5-60 s, so the server waits longer than they do.
KEEP_ALIVE_SECONDS = 75


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes answering requests (about one per core; the main "
            "process then runs background jobs).",
        ),
    ] = 1,
) -> None:
    """Serve the web platform (pages and the JSON API, docs at /docs)."""
    settings = Settings()
    if settings.uses_development_key and not _loopback(host):
        raise ConfigError(
            f"serving on {host} makes this home reachable from other machines, but "
            "MEDLOOP_SECRET_KEY is not set: its patients' pseudonyms would be keyed by the "
            "public development key; set a private key of 32+ characters first"
        )
    pseudonymising(settings)  # warns while the development key is in use
    console.print(f"medloop serving {settings.home.resolve()} on http://{host}:{port}")
    run_server(settings, host=host, port=port, workers=workers)


def _loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run_server(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Serve `settings`' home with uvicorn until interrupted (Ctrl+C).

    With several `workers`, each is a process that builds the app from the environment
    (`medloop.web.app.create_worker_app`, given `settings` through MEDLOOP_ variables):
    this process migrates the database before they start and runs the background jobs.
    Task holds and skips live in the database, so every process sees them."""
    import uvicorn

    from medloop.web import create_app
    from medloop.workflows.jobs import JobWorker

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    os.environ.update(settings_environment(settings))
    ws = workflows.Workspace.open(settings)  # migrates once, before the workers open it
    jobs = JobWorker(ws)
    jobs.start()
    try:
        uvicorn.run("medloop.web.app:create_worker_app", factory=True, workers=workers, **options)
    finally:
        jobs.stop()
        ws.close()


def settings_environment(settings: Settings) -> dict[str, str]:
    """The MEDLOOP_ variables that rebuild `settings` in another process."""
    values = settings.model_dump(exclude_none=True)
    return {f"MEDLOOP_{name.upper()}": str(value) for name, value in values.items()}


NameArg = Annotated[str, typer.Argument(help="Username.")]


@users_app.command("add")
def users_add(
    name: NameArg,
    role: Annotated[Role, typer.Option(help="admin, doctor or annotator.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an account; without --password-stdin a generated password is printed once."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInputError("no password on standard input")
    else:
        password = workflows.accounts.generate_password()
    with workspace() as ws:
        account = workflows.accounts.add_user(ws, username=name, role=role, password=password)
    out.print(f"created {account.role} {account.username!r}")
    if not password_stdin:
        out.print(f"password (shown once): {password}")


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Every account: username, role, whether it is disabled or simulated, and the
    projects it is a member of (`users grant`)."""
    with workspace() as ws:
        rows = [dataclasses.asdict(u) for u in workflows.accounts.list_users(ws)]
    if as_json:
        print_json(rows)
    else:
        shown = [{**row, "projects": ", ".join(row["projects"])} for row in rows]
        out.print(table(f"users ({len(rows)})", shown))


@users_app.command("disable")
def users_disable(name: NameArg) -> None:
    """Keep an account from signing in and end its sessions and API tokens (enabling it
    again does not bring them back)."""
    with workspace() as ws:
        account = workflows.accounts.disable_user(ws, username=name, actor=CLI_ACTOR)
    out.print(f"disabled {account.username!r}; {_ended()}")


@users_app.command("enable")
def users_enable(name: NameArg) -> None:
    """Let a disabled account sign in again."""
    with workspace() as ws:
        account = workflows.accounts.enable_user(ws, username=name, actor=CLI_ACTOR)
    out.print(f"enabled {account.role} {account.username!r}")


@users_app.command("set-password")
def users_set_password(
    name: NameArg,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a password and print it once.")
    ] = False,
) -> None:
    """Give an account a new password, typed twice (hidden) unless --generate; its
    sessions and API tokens stop working."""
    if generate:
        password = workflows.accounts.generate_password()
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    with workspace() as ws:
        account = workflows.accounts.set_password(
            ws, username=name, password=password, actor=CLI_ACTOR
        )
    out.print(f"set the password of {account.username!r}; {_ended()}")
    if generate:
        out.print(f"password (shown once): {password}")


@users_app.command("set-role")
def users_set_role(
    name: NameArg, role: Annotated[str, typer.Argument(help="admin, doctor or annotator.")]
) -> None:
    """Give an account another role; its next request has the new role's rights."""
    with workspace() as ws:
        account = workflows.accounts.set_role(ws, username=name, role=role, actor=CLI_ACTOR)
    out.print(f"{account.username!r} is now {account.role}")


@users_app.command("revoke-sessions")
def users_revoke_sessions(name: NameArg) -> None:
    """End every session and API token of an account; its password stays."""
    with workspace() as ws:
        account = workflows.accounts.revoke_sessions(ws, username=name, actor=CLI_ACTOR)
    out.print(f"signed {account.username!r} out; {_ended()}")


ProjectArg = Annotated[str, typer.Argument(help="Project name.")]


@users_app.command("grant")
def users_grant(name: NameArg, project: ProjectArg) -> None:
    """Make an account a member of a project. A project with members is restricted: only
    its members and the admins reach it (one without members is open to every account)."""
    with workspace() as ws:
        now = workflows.access.grant(ws, username=name, project=project, actor=CLI_ACTOR)
    out.print(f"granted {name!r} project {project!r}; {_members(now)}")


@users_app.command("revoke")
def users_revoke(
    name: NameArg,
    project: ProjectArg,
    open_project: Annotated[
        bool,
        typer.Option(
            "--open", help="Revoke the last member too, opening the project to every account."
        ),
    ] = False,
) -> None:
    """Take an account off a project's members; its next request no longer reaches the
    project (unless the project is left open, or the account is an admin)."""
    with workspace() as ws:
        now = workflows.access.revoke(
            ws, username=name, project=project, actor=CLI_ACTOR, open_project=open_project
        )
    out.print(f"revoked {name!r} from project {project!r}; {_members(now)}")


def _members(members: workflows.access.ProjectMembers) -> str:
    if not members.restricted:
        return f"{members.project!r} has no members: it is open to every account"
    return f"{members.project!r} is for the admins and {', '.join(members.members)}"


def _ended() -> str:
    seconds = workflows.accounts.TOKEN_RECHECK_SECONDS
    return f"its sessions and API tokens end (on a running server within {seconds:.0f} s)"


@tasks_app.command("publish")
def tasks_publish(
    project: ProjectOpt,
    k: Annotated[int, typer.Option("-k", help="New items to label.")] = 50,
    strategy: Annotated[str, typer.Option(help=STRATEGY_HELP)] = RECOMMENDED_STRATEGY.value,
    redundancy: Annotated[int, typer.Option(help="Answers wanted per item.")] = 3,
    gold_rate: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of gold questions.")
    ] = 0.1,
    round: Annotated[int, typer.Option("--round", help="Loop round number.")] = 0,
    seed: SeedOpt = 0,
) -> None:
    """Open labelling tasks for people (active-learning pick plus gold questions)."""
    with workspace() as ws:
        result = workflows.annotate.publish_tasks(
            ws,
            project=project,
            k=k,
            strategy=strategy,
            redundancy=redundancy,
            gold_rate=gold_rate,
            round=round,
            seed=seed,
        )
    out.print(f"published {result.tasks} tasks ({result.gold_tasks} gold) in {project!r}")


@export_app.command("answers")
def export_answers(
    output: Annotated[Path, typer.Argument(help="CSV file to write.")], project: ProjectOpt
) -> None:
    """Every answer: task, item, worker, label, source, time."""
    output_file(output)
    with workspace() as ws:
        csv = workflows.export.export_answers(ws, project=project, actor=CLI_ACTOR)
        _write(csv, output)
    out.print(f"wrote {csv.rows} answers to {output}")


@export_app.command("labels")
def export_labels(
    output: Annotated[Path, typer.Argument(help="CSV file to write.")], project: ProjectOpt
) -> None:
    """Each labelled item's current label (final where signed, else consensus)."""
    output_file(output)
    with workspace() as ws:
        csv = workflows.export.export_labels(ws, project=project, actor=CLI_ACTOR)
        _write(csv, output)
    out.print(f"wrote {csv.rows} labels to {output}")


def _write(csv: workflows.export.CsvExport, output: Path) -> None:
    """Write the export's pieces as they come, each handed to the system before the next
    is read (a full disk fails before the export is audited as done)."""
    with output.open("w", encoding="utf-8", newline="") as file:
        for piece in csv:
            file.write(piece)
            file.flush()


@export_app.command("coco")
def export_coco(
    output: Annotated[Path, typer.Argument(help="JSON file to write.")],
    project: ProjectOpt,
    raw: Annotated[
        bool, typer.Option("--raw", help="Every annotator's box instead of fused boxes.")
    ] = False,
    iou: Annotated[float, typer.Option(help="IoU that links two people's boxes.")] = 0.5,
) -> None:
    """Lesion boxes as a COCO detection dataset (images named <item id>.png)."""
    output_file(output)
    with workspace() as ws:
        data = workflows.export.export_coco(
            ws,
            project=project,
            actor=CLI_ACTOR,
            fused=not raw,
            iou_threshold=iou,
            deliver=lambda d: output.write_text(json.dumps(d, indent=1)),
        )
    out.print(f"wrote {len(data['annotations'])} boxes on {len(data['images'])} images to {output}")
