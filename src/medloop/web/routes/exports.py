"""Exports beyond the CSVs in `api`: lesion boxes as COCO JSON (audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from medloop.web.deps import WS, Reviewer, VisibleProject
from medloop.workflows import export

router = APIRouter(prefix="/api/export", tags=["export"])


@router.get("/coco.json", responses={200: {"content": {"application/json": {}}}, 404: {}})
def export_coco(
    ws: WS,
    account: Reviewer,
    project: VisibleProject,
    fused: Annotated[bool, Query(description="Fuse annotators' boxes (else every box).")] = True,
) -> Any:
    """The project's lesion boxes as a COCO detection dataset (images named `<item>.png`)."""
    data = export.export_coco(ws, project=project, actor=account.username, fused=fused)
    return JSONResponse(data, headers={"Content-Disposition": 'attachment; filename="coco.json"'})
