"""The workspace every workflow runs in: settings, database and blobs under MEDLOOP_HOME."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medloop.config import Settings
from medloop.store import BlobStore, Database


@dataclass
class Workspace:
    """A deployment's database and blobs under MEDLOOP_HOME, opened from settings."""

    settings: Settings
    db: Database
    blobs: BlobStore
    #: Sign-in tokens recently checked against the database: signature -> (account, when)
    #: (`accounts.account_for_token`).
    checked_tokens: dict[str, tuple[Any, float]] = field(default_factory=dict, repr=False)
    #: Per project, its annotators' reliability as review pages show it, with the
    #: `repository.label_state` it was computed at (`review.review_detail`).
    review_evidence: dict[int, tuple[tuple[int, int], Any]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        db.migrate()
        return cls(settings=settings, db=db, blobs=BlobStore(settings.blob_dir))

    def close(self) -> None:
        self.db.dispose()
