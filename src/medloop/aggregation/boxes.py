"""Fuse lesion boxes and points drawn by several annotators.

Boxes are a long DataFrame ``task, worker, x0, y0, x1, y1`` (points: ``task, worker,
x, y``). Within each task, two marks from different workers are linked when their IoU
reaches ``iou_threshold`` (points: when they lie within ``radius``); linked marks form
one cluster (connected components, single linkage). Each cluster becomes one fused
mark, the skill-weighted mean of its members, with a confidence: the share of the
task's annotators (skill-weighted) who drew it. All tasks are processed at once: a
self-join on task, one sparse graph, one connected-components call, one group-by.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from medloop.exceptions import InvalidInputError

BOX_COLUMNS: tuple[str, ...] = ("x0", "y0", "x1", "y1")
POINT_COLUMNS: tuple[str, ...] = ("x", "y")


def _validate(marks: pd.DataFrame, coords: Sequence[str]) -> pd.DataFrame:
    if not isinstance(marks, pd.DataFrame):
        raise InvalidInputError(f"marks must be a pandas DataFrame, got {type(marks).__name__}")
    required = ["task", "worker", *coords]
    missing = [c for c in required if c not in marks.columns]
    if missing:
        raise InvalidInputError(f"marks are missing column(s) {missing}; expected {required}")
    if len(marks) == 0:
        raise InvalidInputError("marks are empty: at least one mark is needed")
    clean = marks.reset_index(drop=True).copy()
    values = clean[list(coords)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(values).all() or clean[["task", "worker"]].isna().any().any():
        raise InvalidInputError("marks must have tasks, workers and finite coordinates")
    clean[list(coords)] = values
    if tuple(coords) == BOX_COLUMNS:
        inverted = (values[:, 2] < values[:, 0]) | (values[:, 3] < values[:, 1])
        if inverted.any():
            row = int(np.argmax(inverted))
            raise InvalidInputError(
                f"box {row} has x1 < x0 or y1 < y0 ({values[row].tolist()}): boxes are "
                "(x0, y0) top left, (x1, y1) bottom right"
            )
    return clean


def box_iou(a: npt.ArrayLike, b: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Element-wise IoU of boxes ``a`` and ``b`` (rows x0, y0, x1, y1).

    >>> float(box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]])[0])
    0.3333333333333333
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    width = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    height = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _fuse(
    marks: pd.DataFrame,
    coords: Sequence[str],
    linked: npt.NDArray[np.bool_],
    left: npt.NDArray[np.intp],
    right: npt.NDArray[np.intp],
    skills: pd.Series | None,
) -> pd.DataFrame:
    n = len(marks)
    graph = sparse.coo_matrix((np.ones(int(linked.sum())), (left[linked], right[linked])), (n, n))
    _, cluster = csgraph.connected_components(graph, directed=False)
    weight = np.ones(n)
    if skills is not None:
        given = pd.to_numeric(pd.Series(skills), errors="coerce")
        if not (np.isfinite(given).all() and (given >= 0).all()):
            raise InvalidInputError("skills must be finite numbers >= 0, one per worker")
        weight = marks["worker"].map(skills).fillna(skills.mean()).to_numpy(dtype=float)
        weight = np.clip(weight, 1e-6, None)
    frame = marks[["task", "worker", *coords]].assign(_cluster=cluster, _w=weight)
    for c in coords:
        frame[c] = frame[c] * frame["_w"]
    grouped = frame.groupby("_cluster", sort=True)
    fused = grouped[list(coords)].sum().div(grouped["_w"].sum(), axis=0)
    fused.insert(0, "task", grouped["task"].first())
    # confidence: skill-weighted share of the task's annotators who drew this cluster
    per_worker = frame.drop_duplicates(["_cluster", "worker"])
    support = per_worker.groupby("_cluster")["_w"].sum()
    annotators = frame.drop_duplicates(["task", "worker"]).groupby("task")["_w"].sum()
    fused["n_marks"] = grouped.size()
    fused["n_workers"] = per_worker.groupby("_cluster").size()
    fused["confidence"] = (support / fused["task"].map(annotators)).clip(upper=1.0)
    fused = fused.sort_values(["task", "confidence"], ascending=[True, False], kind="stable")
    return fused.reset_index(drop=True)


def _pairs(marks: pd.DataFrame) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """All pairs of marks on the same task from different workers (i < j)."""
    idx = pd.DataFrame(
        {"task": marks["task"], "worker": marks["worker"], "i": np.arange(len(marks))}
    )
    joined = idx.merge(idx, on="task", suffixes=("", "_j"))
    keep = (joined["i"] < joined["i_j"]) & (joined["worker"] != joined["worker_j"])
    return joined.loc[keep, "i"].to_numpy(np.intp), joined.loc[keep, "i_j"].to_numpy(np.intp)


def fuse_boxes(
    boxes: pd.DataFrame,
    *,
    iou_threshold: float = 0.5,
    skills: pd.Series | None = None,
) -> pd.DataFrame:
    """Fuse boxes per task: columns ``task, x0, y0, x1, y1, n_marks, n_workers,
    confidence`` (one row per cluster, most confident first within a task).

    ``skills`` (worker -> weight, e.g. a model's worker accuracies) weighs each box in
    the mean and in the confidence; unknown workers get the mean skill.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise InvalidInputError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    marks = _validate(boxes, BOX_COLUMNS)
    left, right = _pairs(marks)
    xy = marks[list(BOX_COLUMNS)].to_numpy(dtype=float)
    linked = box_iou(xy[left], xy[right]) >= iou_threshold
    return _fuse(marks, BOX_COLUMNS, linked, left, right, skills)


def fuse_points(
    points: pd.DataFrame,
    *,
    radius: float,
    skills: pd.Series | None = None,
) -> pd.DataFrame:
    """Fuse points per task (linked within ``radius``): columns ``task, x, y, n_marks,
    n_workers, confidence``."""
    if not radius > 0:
        raise InvalidInputError(f"radius must be positive, got {radius}")
    marks = _validate(points, POINT_COLUMNS)
    left, right = _pairs(marks)
    xy = marks[list(POINT_COLUMNS)].to_numpy(dtype=float)
    linked = np.hypot(*(xy[left] - xy[right]).T) <= radius
    return _fuse(marks, POINT_COLUMNS, linked, left, right, skills)
