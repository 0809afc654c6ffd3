"""The `medloop` command line: one command per workflow, Rich progress on long work.

Domain errors become a one-line message and exit status 2.
"""

from __future__ import annotations

import sys

from pydantic import ValidationError
from rich.markup import escape
from sqlalchemy.exc import OperationalError

from medloop.cli import crowd, demo, inference, learning, loop, precision, web  # noqa: F401  (register commands)
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
    except OperationalError as error:  # the database's disk is full or read-only
        reason = str(error.orig).strip()
        if not any(failure in reason.lower() for failure in STORAGE_FAILURES):
            raise
        console.print(
            f"[bold red]error:[/] the database could not be written: {escape(reason)}. "
            "The failed write was undone; free space (or make the database writable) "
            "and run the command again."
        )
        sys.exit(2)
    except OSError as error:  # a file that cannot be read or written: no traceback
        where = f"{error.filename}: " if error.filename else ""
        console.print(f"[bold red]error:[/] {escape(where + str(error.strerror or error))}")
        sys.exit(2)
