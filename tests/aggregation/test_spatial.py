"""Box, point and mask fusion on synthetic marks with known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation.boxes import box_iou, fuse_boxes, fuse_points
from medloop.aggregation.masks import staple
from medloop.exceptions import InvalidInputError

LESIONS = {  # task -> true boxes
    "img1": [(10.0, 10.0, 30.0, 30.0), (60.0, 60.0, 90.0, 80.0)],
    "img2": [(5.0, 40.0, 25.0, 70.0)],
}


def _drawn(seed: int = 0, jitter: float = 1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for task, boxes in LESIONS.items():
        for worker in ["a", "b", "c", "d", "e"]:
            for box in boxes:
                rows.append((task, worker, *(np.array(box) + rng.normal(0, jitter, 4))))
    rows.append(("img1", "e", 100.0, 5.0, 110.0, 15.0))  # one worker's false positive
    return pd.DataFrame(rows, columns=["task", "worker", "x0", "y0", "x1", "y1"])


def test_box_iou() -> None:
    assert box_iou([[0, 0, 2, 2]], [[0, 0, 2, 2]])[0] == pytest.approx(1.0)
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0] == pytest.approx(1 / 7)
    assert box_iou([[0, 0, 1, 1]], [[2, 2, 3, 3]])[0] == 0.0


def test_fuse_boxes_recovers_lesions() -> None:
    fused = fuse_boxes(_drawn(), iou_threshold=0.5)
    confident = fused[fused["confidence"] > 0.5]
    assert sorted(confident["task"]) == ["img1", "img1", "img2"]
    for task, boxes in LESIONS.items():
        got = confident.loc[confident["task"] == task, ["x0", "y0", "x1", "y1"]].to_numpy()
        for box in boxes:
            assert box_iou(got, np.tile(box, (len(got), 1))).max() > 0.9
    assert confident["n_workers"].eq(5).all()
    stray = fused[fused["confidence"] <= 0.5]
    assert len(stray) == 1 and stray["confidence"].iloc[0] == pytest.approx(0.2)


def test_skills_weigh_the_fused_box() -> None:
    boxes = pd.DataFrame(
        [("t", "good", 0.0, 0.0, 10.0, 10.0), ("t", "poor", 1.0, 1.0, 11.0, 11.0)],
        columns=["task", "worker", "x0", "y0", "x1", "y1"],
    )
    even = fuse_boxes(boxes, iou_threshold=0.3)
    weighted = fuse_boxes(boxes, iou_threshold=0.3, skills=pd.Series({"good": 0.9, "poor": 0.1}))
    assert even["x0"].iloc[0] == pytest.approx(0.5)
    assert weighted["x0"].iloc[0] == pytest.approx(0.1)
    assert weighted["confidence"].iloc[0] == pytest.approx(1.0)


def test_fuse_points() -> None:
    rng = np.random.default_rng(1)
    truth = np.array([[20.0, 20.0], [70.0, 40.0]])
    rows = [("t", w, *(truth[i] + rng.normal(0, 1.0, 2))) for w in "abcd" for i in range(2)]
    fused = fuse_points(pd.DataFrame(rows, columns=["task", "worker", "x", "y"]), radius=5.0)
    assert len(fused) == 2
    got = fused.sort_values("x")[["x", "y"]].to_numpy()
    assert np.abs(got - truth).max() < 1.5
    assert fused["confidence"].eq(1.0).all()


def test_bad_marks() -> None:
    with pytest.raises(InvalidInputError, match="missing"):
        fuse_boxes(pd.DataFrame({"task": [1], "worker": ["a"]}))
    with pytest.raises(InvalidInputError, match="empty"):
        fuse_points(pd.DataFrame(columns=["task", "worker", "x", "y"]), radius=1.0)
    with pytest.raises(InvalidInputError, match="finite"):
        fuse_points(pd.DataFrame({"task": [1], "worker": ["a"], "x": [np.nan], "y": [0]}), radius=1)


def test_staple_recovers_truth_and_rater_quality() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    truth = (yy - 32) ** 2 + (xx - 30) ** 2 < 15**2
    quality = [(0.95, 0.99), (0.9, 0.97), (0.8, 0.95), (0.6, 0.9)]  # (sensitivity, specificity)
    masks = []
    for sens, spec in quality:
        noise = rng.random(truth.shape)
        masks.append(np.where(truth, noise < sens, noise > spec))
    result = staple(np.array(masks))
    fused = result.mask()
    dice = 2 * (fused & truth).sum() / (fused.sum() + truth.sum())
    assert dice > 0.98
    assert result.sensitivity == pytest.approx([q[0] for q in quality], abs=0.03)
    assert result.specificity == pytest.approx([q[1] for q in quality], abs=0.02)
    # a plain vote of the four masks is worse
    vote = np.array(masks).mean(axis=0) > 0.5
    assert (fused != truth).sum() < (vote != truth).sum()


def test_staple_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="binary"):
        staple(np.full((2, 4, 4), 0.5))


def test_inverted_boxes_bad_skills_and_out_of_range_staple_settings_are_refused() -> None:
    box = {"task": [1, 1], "worker": ["a", "b"], "x0": [5, 5], "y0": [5, 5]}
    inverted = pd.DataFrame({**box, "x1": [1, 1], "y1": [1, 1]})
    with pytest.raises(InvalidInputError, match="x1 < x0 or y1 < y0"):
        fuse_boxes(inverted)
    fine = pd.DataFrame({**box, "x1": [9, 9], "y1": [9, 9]})
    with pytest.raises(InvalidInputError, match="skills must be finite"):
        fuse_boxes(fine, skills=pd.Series({"a": np.nan, "b": 0.9}))
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 1:3, 1:3] = True
    for bad in ({"prior": 5.0}, {"init_sensitivity": 3.0}, {"init_specificity": 0.0}):
        with pytest.raises(InvalidInputError, match="strictly between 0 and 1"):
            staple(masks, **bad)
