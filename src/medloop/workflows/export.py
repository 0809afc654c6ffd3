"""Exports: every answer, each item's current label (tables ready for CSV), and lesion
boxes as COCO JSON. Every export is recorded in the audit log (who, what, when), once
it has been handed over: `deliver` (e.g. writing the file) runs first, so an export that
could not be written is not on file as done.

Labels are written as class names, workers by username, items by id (not by source file
name, which may carry identifying text); never patient data. COCO images are named
`<item id>.png`, the name `medloop serve` shows them under.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pandas as pd
from PIL import Image

from medloop import __version__
from medloop.aggregation.boxes import fuse_boxes
from medloop.store import repository as repo
from medloop.types import LabelKind
from medloop.workflows.workspace import Workspace

ANSWER_COLUMNS = ["task", "item", "worker", "label", "source", "time"]
LABEL_COLUMNS = ["item", "split", "label", "kind", "source", "method", "confidence"]
#: Who an export is recorded under when the caller names nobody (e.g. a script).
SYSTEM = "system"


T = TypeVar("T")


@dataclass(frozen=True)
class _Entry:
    """What the audit log records of an export."""

    actor: str
    what: str
    project_id: int
    rows: int


def _handed_over(
    ws: Workspace, result: T, deliver: Callable[[T], object] | None, entry: _Entry
) -> T:
    """`deliver(result)`, then the audit entry: if delivering fails, nothing is on file."""
    if deliver is not None:
        deliver(result)
    with ws.db.session() as s:
        repo.audit(
            s,
            actor=entry.actor,
            action=f"export.{entry.what}",
            entity="project",
            entity_id=entry.project_id,
            detail={"rows": entry.rows},
        )
    return result


def export_answers(
    ws: Workspace,
    *,
    project: str,
    actor: str = SYSTEM,
    deliver: Callable[[pd.DataFrame], object] | None = None,
) -> pd.DataFrame:
    """All answers of a project: task, item, worker, label (class name), source, time."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        answers = repo.answers_frame(s, project_id=record.id)
        classes = [str(c) for c in record.classes]
    entry = _Entry(actor, "answers", record.id, len(answers))
    if answers.empty:
        return _handed_over(ws, pd.DataFrame(columns=ANSWER_COLUMNS), deliver, entry)
    frame = pd.DataFrame(
        {
            "task": answers["task_id"].astype(int),
            "item": answers["task"].astype(int),
            "worker": answers["worker"],
            "label": [classes[int(v)] for v in answers["label"]],
            "source": answers["source"],
            "time": pd.to_datetime(answers["created_at"], utc=True).map(lambda t: t.isoformat()),
        },
        columns=ANSWER_COLUMNS,
    )
    return _handed_over(ws, frame, deliver, entry)


def _current_labels(s: Any, project_id: int) -> pd.DataFrame:
    """Final labels where signed, the consensus otherwise (index item; label, kind, ...)."""
    finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL)
    consensus = repo.current_labels(s, project_id=project_id, kind=LabelKind.CONSENSUS)
    finals = finals.assign(kind=str(LabelKind.FINAL))
    consensus = consensus[~consensus.index.isin(finals.index)].assign(kind=str(LabelKind.CONSENSUS))
    return pd.concat([finals, consensus]).sort_index()


def export_labels(
    ws: Workspace,
    *,
    project: str,
    actor: str = SYSTEM,
    deliver: Callable[[pd.DataFrame], object] | None = None,
) -> pd.DataFrame:
    """Each labelled item's current label: the final label where a doctor (or gold) signed
    one, the crowd consensus otherwise."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        classes = [str(c) for c in record.classes]
        current = _current_labels(s, record.id)
        items = repo.items_frame(s, project_id=record.id)
    entry = _Entry(actor, "labels", record.id, len(current))
    if current.empty:
        return _handed_over(ws, pd.DataFrame(columns=LABEL_COLUMNS), deliver, entry)
    frame = pd.DataFrame(
        {
            "item": current.index.astype(int),
            "split": items.loc[current.index, "split"].to_numpy(),
            "label": [classes[int(v)] for v in current["label"]],
            "kind": current["kind"].to_numpy(),
            "source": current["source"].to_numpy(),
            "method": current["method"].to_numpy(),
            "confidence": current["confidence"].to_numpy(),
        },
        columns=LABEL_COLUMNS,
    )
    return _handed_over(ws, frame, deliver, entry)


def export_coco(
    ws: Workspace,
    *,
    project: str,
    actor: str = SYSTEM,
    fused: bool = True,
    iou_threshold: float = 0.5,
    deliver: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Lesion boxes as a COCO object-detection dataset (a JSON-ready dict).

    `fused` (default): annotators' boxes on each item fused by `aggregation.boxes`
    (IoU >= `iou_threshold` links boxes from different people); each fused box has a
    `score` (share of the item's box-drawing annotators who drew it) and its category is
    the item's current label (final, else consensus, else the majority of the answers
    that came with boxes). Otherwise every drawn box, with its annotator and the label
    given with it. `bbox` is [x, y, width, height] in pixels; category ids start at 1.
    """
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        classes = [str(c) for c in record.classes]
        boxes = repo.answer_boxes_frame(s, project_id=record.id)
        items = repo.items_frame(s, project_id=record.id)
        current = _current_labels(s, record.id)["label"] if len(boxes) else pd.Series()
    sizes = {
        int(item): _png_size(ws.blobs.get(str(items.loc[item, "image_sha256"])))
        for item in sorted(set(boxes["item"]))
    }
    if fused and len(boxes):
        annotations = _fused_annotations(boxes, current, sizes, iou_threshold)
    else:
        annotations = [
            _annotation(
                int(row.item),
                int(row.label),
                (row.x, row.y, row.x + row.width, row.y + row.height),
                sizes[int(row.item)],
                {"worker": str(row.worker), "source": str(row.source)},
            )
            for row in boxes.itertuples()
        ]
    for number, annotation in enumerate(annotations, start=1):
        annotation["id"] = number
    coco = {
        "info": {
            "description": f"medloop project {record.name}: lesion boxes"
            + (" (fused)" if fused else " (every annotator)"),
            "version": __version__,
            "date_created": datetime.now(UTC).isoformat(),
        },
        "licenses": [],
        "images": [
            {"id": item, "file_name": f"{item}.png", "width": w, "height": h}
            for item, (w, h) in sizes.items()
        ],
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": record.name}
            for i, name in enumerate(classes)
        ],
    }
    return _handed_over(ws, coco, deliver, _Entry(actor, "coco", record.id, len(boxes)))


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:  # reads the header only
        width, height = image.size
    return int(width), int(height)


def _annotation(
    item: int,
    label: int,
    corners: tuple[float, float, float, float],
    size: tuple[int, int],
    extra: dict[str, Any],
) -> dict[str, Any]:
    width, height = size
    x0, y0, x1, y1 = corners
    box = [round(x0 * width, 2), round(y0 * height, 2)]
    box += [round((x1 - x0) * width, 2), round((y1 - y0) * height, 2)]
    return {
        "id": 0,
        "image_id": item,
        "category_id": label + 1,
        "bbox": box,
        "area": round(box[2] * box[3], 2),
        "iscrowd": 0,
        **extra,
    }


def _fused_annotations(
    boxes: pd.DataFrame,
    current: pd.Series,
    sizes: dict[int, tuple[int, int]],
    iou_threshold: float,
) -> list[dict[str, Any]]:
    marks = pd.DataFrame(
        {
            "task": boxes["item"].astype(int),
            "worker": boxes["worker"],
            "x0": boxes["x"],
            "y0": boxes["y"],
            "x1": boxes["x"] + boxes["width"],
            "y1": boxes["y"] + boxes["height"],
        }
    )
    fused = fuse_boxes(marks, iou_threshold=iou_threshold)
    majority = boxes.groupby("item")["label"].agg(lambda s: int(s.value_counts().index[0]))
    return [
        _annotation(
            int(row.task),
            int(current.get(int(row.task), majority[int(row.task)])),
            (row.x0, row.y0, row.x1, row.y1),
            sizes[int(row.task)],
            {
                "score": round(float(row.confidence), 4),
                "n_annotators": int(row.n_workers),
                "n_boxes": int(row.n_marks),
            },
        )
        for row in fused.itertuples()
    ]
