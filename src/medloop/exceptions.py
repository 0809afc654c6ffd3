"""One exception tree for medloop.

The core raises these domain errors; only the edges (CLI, web) turn them into exit
codes or HTTP status codes.

    MedloopError
     +-- ConfigError              settings missing or unsafe
     +-- InvalidInputError        the caller's data is wrong (bad columns, NaN labels, ...)
     |    +-- IngestError         a file could not be ingested; names the file
     |    +-- UnknownOptionError  an option outside its allowed values ("did you mean")
     +-- NotFoundError            a record or file that should exist does not
     +-- ConflictError            the write would duplicate or contradict stored data
     |    +-- AlreadyAnsweredError  this person answered the image before
     +-- DatasetUnavailableError  a public dataset is neither local nor downloadable
     +-- NotFittedError           a model or aggregator used before `fit`
"""

from __future__ import annotations

from pathlib import Path


class MedloopError(Exception):
    """Base class of every error medloop raises on purpose. ``code``, where a class sets
    one, names the case for programs (the web API's JSON carries it beside the message)."""

    code: str | None = None


class ConfigError(MedloopError):
    """Settings are missing, inconsistent or unsafe for the environment."""


class InvalidInputError(MedloopError, ValueError):
    """The caller's data does not satisfy a documented contract."""


class IngestError(InvalidInputError):
    """A file could not be ingested. The message names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnknownOptionError(InvalidInputError):
    """An option value outside its allowed set."""


class NotFoundError(MedloopError, LookupError):
    """A record, file or dataset that should exist does not."""


class ConflictError(MedloopError):
    """The operation would duplicate or contradict stored data."""


class AlreadyAnsweredError(ConflictError):
    """This person has answered the image before (a resent answer is counted once)."""

    code = "already_answered"


class DatasetUnavailableError(MedloopError):
    """A public dataset is not in MEDLOOP_DATA_DIR and cannot be downloaded."""


class NotFittedError(MedloopError, AttributeError):
    """A model or aggregator was used before `fit`."""
