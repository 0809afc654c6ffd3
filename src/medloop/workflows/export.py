"""Exports: every answer and each item's current label as CSV, read and handed over in
pieces (memory stays flat however large the project grows), and lesion boxes as COCO
JSON. Every export is recorded in the audit log (who, what, when) once it has been
handed over: a CSV after its last piece was taken, COCO after `deliver` (e.g. writing
the file) ran, so an export that could not be written is not on file as done.

Labels are written as class names, workers by username, items by id (not by source file
name, which may carry identifying text); never patient data. COCO images are named
`<item id>.png`, the name `medloop serve` shows them under.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
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
#: Rows a CSV export reads, and hands over, at a time: its memory stays the same however
#: large the project grows.
BATCH = 5_000


T = TypeVar("T")


@dataclass(frozen=True)
class _Entry:
    """What the audit log records of an export."""

    actor: str
    what: str
    project_id: int
    rows: int


def _record(ws: Workspace, entry: _Entry) -> None:
    with ws.db.session() as s:
        repo.audit(
            s,
            actor=entry.actor,
            action=f"export.{entry.what}",
            entity="project",
            entity_id=entry.project_id,
            detail={"rows": entry.rows},
        )


def _handed_over(
    ws: Workspace, result: T, deliver: Callable[[T], object] | None, entry: _Entry
) -> T:
    """`deliver(result)`, then the audit entry: if delivering fails, nothing is on file."""
    if deliver is not None:
        deliver(result)
    _record(ws, entry)
    return result


class CsvExport:
    """A CSV export handed over in pieces (the header, then the text of up to `BATCH`
    rows at a time) as it is read, never whole in memory. Iterate over it once; it is
    recorded in the audit log after its last piece has been taken, so an export left
    midway (a download closed, a disk full) is not on file as done. `rows`: the rows
    handed over so far."""

    def __init__(
        self,
        ws: Workspace,
        pieces: Iterator[tuple[str, int]],
        *,
        actor: str,
        what: str,
        project_id: int,
    ) -> None:
        self._ws, self._pieces = ws, pieces
        self._actor, self._what, self._project_id = actor, what, project_id
        self.rows = 0

    def __iter__(self) -> Iterator[str]:
        for text, rows in self._pieces:
            yield text
            self.rows += rows
        _record(ws=self._ws, entry=_Entry(self._actor, self._what, self._project_id, self.rows))


def export_answers(
    ws: Workspace, *, project: str, actor: str = SYSTEM, batch: int = BATCH
) -> CsvExport:
    """All answers of a project as CSV: task, item, worker, label (class name), source,
    time. The answers given after the call are left out."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
        through, _ = repo.label_state(s, project_id=record.id)
    classes = [str(c) for c in record.classes]
    pieces = _answer_pieces(ws, record.id, classes, through=through, batch=batch)
    return CsvExport(ws, pieces, actor=actor, what="answers", project_id=record.id)


def _answer_pieces(
    ws: Workspace, project_id: int, classes: list[str], *, through: int, batch: int
) -> Iterator[tuple[str, int]]:
    yield pd.DataFrame(columns=ANSWER_COLUMNS).to_csv(index=False), 0
    after = 0
    while after < through:
        with ws.db.session() as s:
            answers = repo.answers_page(
                s, project_id=project_id, after=after, through=through, limit=batch
            )
        if answers.empty:
            return
        after = int(answers["answer_id"].iloc[-1])
        frame = pd.DataFrame(
            {
                "task": answers["task_id"].astype(int),
                "item": answers["task"].astype(int),
                "worker": answers["worker"],
                "label": [classes[int(v)] for v in answers["label"]],
                "source": answers["source"],
                "time": pd.to_datetime(answers["created_at"], utc=True).map(
                    lambda t: t.isoformat()
                ),
            },
            columns=ANSWER_COLUMNS,
        )
        yield frame.to_csv(index=False, header=False), len(frame)


def _current_labels(s: Any, project_id: int, item_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Final labels where signed, the consensus otherwise (index item; label, kind, ...),
    of `item_ids` only if given."""
    finals = repo.current_labels(s, project_id=project_id, kind=LabelKind.FINAL, item_ids=item_ids)
    consensus = repo.current_labels(
        s, project_id=project_id, kind=LabelKind.CONSENSUS, item_ids=item_ids
    )
    finals = finals.assign(kind=str(LabelKind.FINAL))
    consensus = consensus[~consensus.index.isin(finals.index)].assign(kind=str(LabelKind.CONSENSUS))
    return pd.concat([finals, consensus]).sort_index()


def export_labels(
    ws: Workspace, *, project: str, actor: str = SYSTEM, batch: int = BATCH
) -> CsvExport:
    """Each labelled item's current label as CSV: the final label where a doctor (or
    gold) signed one, the crowd consensus otherwise; each as it stands when its page of
    `batch` items is read."""
    with ws.db.session() as s:
        record = repo.get_image_project(s, name=project)
    classes = [str(c) for c in record.classes]
    pieces = _label_pieces(ws, record.id, classes, batch=batch)
    return CsvExport(ws, pieces, actor=actor, what="labels", project_id=record.id)


def _label_pieces(
    ws: Workspace, project_id: int, classes: list[str], *, batch: int
) -> Iterator[tuple[str, int]]:
    yield pd.DataFrame(columns=LABEL_COLUMNS).to_csv(index=False), 0
    after = 0
    while True:
        with ws.db.session() as s:
            splits = repo.item_splits_page(s, project_id=project_id, after=after, limit=batch)
            if splits.empty:
                return
            current = _current_labels(s, project_id, item_ids=splits.index.tolist())
        after = int(splits.index[-1])
        if current.empty:
            continue
        frame = pd.DataFrame(
            {
                "item": current.index.astype(int),
                "split": splits.loc[current.index].to_numpy(),
                "label": [classes[int(v)] for v in current["label"]],
                "kind": current["kind"].to_numpy(),
                "source": current["source"].to_numpy(),
                "method": current["method"].to_numpy(),
                "confidence": current["confidence"].to_numpy(),
            },
            columns=LABEL_COLUMNS,
        )
        yield frame.to_csv(index=False, header=False), len(frame)


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
