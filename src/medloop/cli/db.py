"""The database's schema: `db current` (its migration against this medloop's) and
`db upgrade` (explicit; a PostgreSQL database only once backed up)."""

from __future__ import annotations

from typing import Annotated

import typer

from medloop import workflows
from medloop.cli.common import CLI_ACTOR, JsonOpt, app, out, print_json
from medloop.config import Settings

db_app = typer.Typer(
    help="The database's schema: its migration, and upgrading it.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


@db_app.command("current")
def current(as_json: JsonOpt = False) -> None:
    """The database's migration against this medloop's newest, and the migrations an
    upgrade would apply (nothing is changed)."""
    state = workflows.schema.schema_state(Settings())
    if as_json:
        print_json(
            {
                "dialect": state.dialect,
                "current": state.current,
                "head": state.head,
                "pending": state.pending,
                "up_to_date": state.up_to_date,
                "known": state.known,
            }
        )
        return
    out.print(f"database ({state.dialect}) at migration {state.current or 'none (empty)'}")
    out.print(f"this medloop's newest migration: {state.head}")
    if not state.known:
        out.print("the database is newer than this medloop knows: upgrade medloop")
    elif state.up_to_date:
        out.print("up to date")
    else:
        out.print(f"to apply: {', '.join(state.pending)} (medloop db upgrade)")


@db_app.command("upgrade")
def upgrade(
    backed_up: Annotated[
        bool,
        typer.Option(
            "--backed-up",
            help="PostgreSQL: you took a pg_dump of the database just now (medloop keeps "
            "no copy of it); without this the command prints the pg_dump to run first.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Bring the database's schema to this medloop's newest migration (audited); stop
    the servers first. A SQLite database is copied beside itself first
    (medloop.db.before-MIGRATION), as opening a home does. A PostgreSQL database is
    upgraded only with --backed-up: without it, the pg_dump command to run first is
    printed and the command exits with status 1 (opening a home never upgrades
    PostgreSQL)."""
    done = workflows.schema.upgrade(Settings(), backed_up=backed_up, actor=CLI_ACTOR)
    if as_json:
        print_json(
            {
                "dialect": done.dialect,
                "from": done.before,
                "to": done.after,
                "applied": done.applied,
                "copy": None if done.copy is None else str(done.copy),
                "refused": done.refused,
            }
        )
    elif done.refused:
        out.print(
            f"the PostgreSQL database is at migration {done.before}; medloop keeps no copy "
            f"of a PostgreSQL database. Back it up first:\n  {done.refused}\n"
            "then run: medloop db upgrade --backed-up"
        )
    elif not done.applied:
        out.print(f"the database is at migration {done.after}: up to date")
    else:
        out.print(f"upgraded the database from {done.before} to {done.after}")
        if done.copy is not None:
            out.print(f"a copy of it as it was: {done.copy}")
        elif done.dialect == "postgresql":
            out.print("no copy kept by medloop: the pg_dump taken before is the way back")
    if done.refused:
        raise typer.Exit(1)
