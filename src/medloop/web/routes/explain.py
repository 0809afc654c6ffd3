"""Explanations for reviewers: the Grad-CAM overlay of an item under the newest model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from medloop.web.deps import WS, Reviewer, VisibleItem
from medloop.workflows import explain

router = APIRouter(prefix="/api")


@router.get(
    "/review/{item_id}/gradcam.png",
    tags=["review"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, 404: {}, 422: {}},
)
def gradcam_png(
    item_id: VisibleItem,
    ws: WS,
    account: Reviewer,
    label: Annotated[
        str | None, Query(max_length=100, description="Class to explain (default: predicted).")
    ] = None,
) -> Response:
    """The item's image with the Grad-CAM heat map of its project's newest model (doctors
    and admins; 404 while the project has no model). Each read is audited and, as the
    image itself, never stored by the browser (a shared workstation keeps no copy)."""
    png = explain.gradcam_overlay(ws, item_id=item_id, label=label, actor=account.username)
    return Response(png, media_type="image/png")
