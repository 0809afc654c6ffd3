"""The audit log as people read it: pages of who did what, when; and recording reads.

Writes (answers, final labels, consensus runs, exports, jobs) are audited where they
happen, in the same transaction. `record_read` is for reads of patient-level data
(an item's evidence, a patient's record) so that every look is on file too. Entries
carry ids, never personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medloop.exceptions import InvalidInputError
from medloop.store import repository as repo
from medloop.workflows.workspace import Workspace

#: Largest page of the audit log one call returns.
MAX_PAGE = 500


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditRow]
    total: int
    page: int
    per_page: int
    actions: list[str]  # every action on file, for filters
    #: project id (as entries store it, a string) -> name, for people to read
    project_names: dict[str, str] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def audit_log(
    ws: Workspace,
    *,
    actor: str | None = None,
    action: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> AuditPage:
    """Page `page` (from 1) of the audit log, newest first, filtered by actor/action."""
    if page < 1 or not 1 <= per_page <= MAX_PAGE:
        raise InvalidInputError(f"page must be >= 1 and per_page in 1..{MAX_PAGE}")
    with ws.db.session() as s:
        rows, total = repo.audit_entries(
            s,
            actor=actor or None,
            action=action or None,
            offset=(page - 1) * per_page,
            limit=per_page,
        )
        entries = [
            AuditRow(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                entity=r.entity,
                entity_id=r.entity_id,
                detail=dict(r.detail or {}),
            )
            for r in rows
        ]
        actions = repo.audit_actions(s)
        names = {str(p.id): p.name for p in repo.list_projects(s)}
    return AuditPage(
        entries=entries,
        total=total,
        page=page,
        per_page=per_page,
        actions=actions,
        project_names=names,
    )


def record_read(
    ws: Workspace,
    *,
    actor: str,
    entity: str,
    entity_id: str | int,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record that `actor` read one patient-level record (action `<entity>.read`)."""
    with ws.db.session() as s:
        repo.audit(
            s,
            actor=actor,
            action=f"{entity}.read",
            entity=entity,
            entity_id=entity_id,
            detail=detail,
        )
