"""The `medloop` command line: one command per workflow, Rich progress on long work.

Domain errors become a one-line message and exit status 2.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError
from rich.markup import escape

from medloop.cli import (  # noqa: F401  (register commands)
    crowd,
    db,
    demo,
    erasure,
    inference,
    learning,
    loop,
    models,
    precision,
    review,
    risk_models,
    store,
    web,
)
from medloop.cli.common import app, console
from medloop.exceptions import MedloopError

__all__ = ["app", "main"]

#: What a database says when its storage, not medloop, fails (SQLite; PostgreSQL).
STORAGE_FAILURES = (
    "disk is full",
    "disk i/o error",
    "readonly database",
    "no space left on device",
    "read-only file system",
)


def main() -> None:
    """Entry point: domain errors print one clear line and exit with status 2."""
    try:
        app()
    except MedloopError as error:
        console.print(f"[bold red]error:[/] {escape(str(error))}")
        sys.exit(2)
    except ValidationError as error:  # a MEDLOOP_ setting of the wrong kind
        if error.title != "Settings":
            raise
        for problem in error.errors():
            name = "MEDLOOP_" + "_".join(str(part) for part in problem["loc"]).upper()
            console.print(f"[bold red]error:[/] {escape(name)}: {escape(problem['msg'])}")
        sys.exit(2)
    except OSError as error:  # a file that cannot be read or written: no traceback
        where = f"{error.filename}: " if error.filename else ""
        console.print(f"[bold red]error:[/] {escape(where + str(error.strerror or error))}")
        sys.exit(2)
    except Exception as error:
        reason = _storage_failure(error)
        if reason is None:
            raise
        console.print(
            f"[bold red]error:[/] the database could not be written: {escape(reason)}. "
            "The failed write was undone; free space (or make the database writable) "
            "and run the command again."
        )
        sys.exit(2)


def _storage_failure(error: Exception) -> str | None:
    """The database's own words when `error` is its storage failing (a full or read-only
    disk), else None. SQLAlchemy is looked up, not imported: a command that never opened
    the database did not load it, and `medloop --help` must stay light."""
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is None or not isinstance(error, sqlalchemy_errors.OperationalError):
        return None
    reason = str(error.orig).strip()
    return reason if any(failure in reason.lower() for failure in STORAGE_FAILURES) else None
