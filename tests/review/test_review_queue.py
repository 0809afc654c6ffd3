"""Known-answer tests for the doctor review queue."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError
from medloop.review import rank_for_review

H08 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)  # 0.7219...
H09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)  # 0.4690...


@pytest.fixture
def crowd() -> pd.DataFrame:
    return pd.DataFrame(
        {"normal": [1.0, 0.5, 0.9, 0.2], "pneumonia": [0.0, 0.5, 0.1, 0.8]},
        index=pd.Index(["d", "c", "b", "a"], name="task"),
    )


def test_crowd_only_ranks_by_crowd_entropy(crowd: pd.DataFrame) -> None:
    out = rank_for_review(crowd)
    assert out.index.tolist() == ["c", "a", "b", "d"]
    assert out["uncertainty"].tolist() == pytest.approx([1.0, H08, H09, 0.0])
    assert out["score"].tolist() == pytest.approx([1.0, H08, H09, 0.0])
    assert out["disagreement"].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert out["crowd_label"].tolist() == ["normal", "pneumonia", "normal", "normal"]
    assert out["crowd_confidence"].tolist() == pytest.approx([0.5, 0.8, 0.9, 1.0])
    assert out["model_label"].isna().all()
    assert out["model_confidence"].isna().all()
    assert out["reason"].tolist() == [
        "crowd unsure",
        "crowd unsure",
        "crowd confident; no model prediction",
        "crowd confident; no model prediction",
    ]
    assert out.index.name == "task"


def test_model_disagreement_and_missing_model_rows(crowd: pd.DataFrame) -> None:
    # Columns in another order; no prediction for "c"; an extra item "z" is ignored.
    model = pd.DataFrame(
        {"pneumonia": [0.0, 0.9, 0.8, 0.5], "normal": [1.0, 0.1, 0.2, 0.5]},
        index=["d", "b", "a", "z"],
    )
    out = rank_for_review(crowd, model)
    assert len(out) == 4
    # b: crowd 0.9 normal vs model 0.9 pneumonia -> TV 0.8, uncertainty (H09 + H09)/2.
    # a: crowd and model agree exactly -> TV 0, uncertainty H08.
    # c: no model -> crowd entropy 1.0.  d: both certain -> 0.
    expected = {"b": 0.8 + H09, "c": 1.0, "a": H08, "d": 0.0}
    assert out.index.tolist() == ["b", "c", "a", "d"]
    assert out["score"].to_dict() == pytest.approx(expected)
    assert out.loc["b", "disagreement"] == pytest.approx(0.8)
    assert out.loc["b", "model_label"] == "pneumonia"
    assert out.loc["b", "model_confidence"] == pytest.approx(0.9)
    assert out.loc["b", "reason"] == "crowd and model disagree"
    assert out.loc["a", "reason"] == "crowd unsure; model unsure"
    assert out.loc["d", "reason"] == "crowd and model agree"
    assert out.loc["c", "model_label"] is None
    assert np.isnan(out.loc["c", "model_uncertainty"])


def test_weights_change_the_order(crowd: pd.DataFrame) -> None:
    model = pd.DataFrame({"normal": [0.2, 0.5], "pneumonia": [0.8, 0.5]}, index=["b", "c"])
    only_disagreement = rank_for_review(crowd, model, uncertainty_weight=0.0)
    assert only_disagreement.index.tolist()[0] == "b"
    assert only_disagreement.loc["b", "score"] == pytest.approx(0.7)
    only_uncertainty = rank_for_review(crowd, model, disagreement_weight=0.0)
    assert only_uncertainty.index.tolist()[0] == "c"


def test_ties_break_by_item_id() -> None:
    crowd = pd.DataFrame({"x": [0.5, 0.5, 0.5, 1.0], "y": [0.5, 0.5, 0.5, 0.0]}, index=[7, 3, 5, 1])
    assert rank_for_review(crowd).index.tolist() == [3, 5, 7, 1]


def test_empty_crowd_gives_empty_queue() -> None:
    out = rank_for_review(pd.DataFrame({"x": [], "y": []}, dtype=float))
    assert out.empty
    assert {"crowd_label", "score", "reason"} <= set(out.columns)


@pytest.mark.parametrize(
    ("crowd", "model"),
    [
        (pd.DataFrame({"x": [0.5], "y": [0.6]}), None),  # row sums to 1.1
        (pd.DataFrame({"x": [np.nan], "y": [1.0]}), None),  # NaN
        (pd.DataFrame({"x": [1.0]}), None),  # one class
        (pd.DataFrame({"x": [0.5, 0.5], "y": [0.5, 0.5]}, index=[1, 1]), None),  # duplicate id
        (
            pd.DataFrame({"x": [0.5], "y": [0.5]}),
            pd.DataFrame({"x": [0.5], "z": [0.5]}),  # mismatched columns
        ),
        (
            pd.DataFrame({"x": [0.5], "y": [0.5]}),
            pd.DataFrame({"x": [np.nan], "y": [0.5]}),  # NaN in model
        ),
    ],
)
def test_bad_input_raises(crowd: pd.DataFrame, model: pd.DataFrame | None) -> None:
    with pytest.raises(InvalidInputError):
        rank_for_review(crowd, model)


def test_negative_weight_raises() -> None:
    crowd = pd.DataFrame({"x": [0.5], "y": [0.5]})
    with pytest.raises(InvalidInputError):
        rank_for_review(crowd, disagreement_weight=-1.0)


def test_a_binary_model_decides_at_its_threshold(crowd: pd.DataFrame) -> None:
    """The queue shows what the model decides, at the cut it was tuned to, not its argmax:
    at a cut of 0.3, p(pneumonia) 0.4 is a pneumonia call, and 0.2 is not."""
    model = pd.DataFrame(
        {"normal": [0.6, 0.8, 0.9, 0.1], "pneumonia": [0.4, 0.2, 0.1, 0.9]},
        index=["c", "b", "d", "a"],
    )
    at_half = rank_for_review(crowd, model)
    at_cut = rank_for_review(crowd, model, model_threshold=0.3)
    assert at_half.loc["c", "model_label"] == "normal"
    assert at_cut.loc["c", "model_label"] == "pneumonia"
    assert at_cut.loc["c", "model_confidence"] == pytest.approx(0.4)  # of its decision
    assert at_cut.loc[["b", "d", "a"], "model_label"].tolist() == ["normal", "normal", "pneumonia"]
    # the crowd says normal for c (0.5 / 0.5 -> the first class): now they differ
    assert "disagree" in at_cut.loc["c", "reason"] and "disagree" not in at_half.loc["c", "reason"]
    for bad in (0.0, 1.0, float("nan")):
        with pytest.raises(InvalidInputError, match="model_threshold"):
            rank_for_review(crowd, model, model_threshold=bad)
