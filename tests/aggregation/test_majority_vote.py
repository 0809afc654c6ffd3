"""Majority vote on hand-computed cases, and the answers validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import MajorityVote, validate_answers
from medloop.exceptions import InvalidInputError


def test_hand_computed_votes_ties_and_weights() -> None:
    answers = pd.DataFrame(
        {
            "task": ["t1", "t1", "t1", "t2", "t2", "t3", "t3", "t3"],
            "worker": ["a", "b", "c", "a", "b", "a", "b", "c"],
            "label": [0, 1, 1, 1, 0, 0, 1, 1],
            "weight": [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0, 1.0],
        }
    )
    agg = MajorityVote().fit(answers)
    # t1: 1 vote vs 2; t2: tie -> lowest class 0; t3: weight 3 vs 2 -> class 0
    assert agg.labels_.to_dict() == {"t1": 1, "t2": 0, "t3": 0}
    expected = pd.DataFrame(
        [[1 / 3, 2 / 3], [0.5, 0.5], [0.6, 0.4]],
        index=pd.Index(["t1", "t2", "t3"], name="task"),
        columns=pd.Index([0, 1], name="label"),
    )
    pd.testing.assert_frame_equal(agg.probas_, expected, check_index_type=False)


def test_unweighted_ignores_nothing_and_weight_changes_outcome() -> None:
    answers = pd.DataFrame(
        {"task": [1, 1, 1], "worker": ["a", "b", "c"], "label": ["cat", "dog", "dog"]}
    )
    assert MajorityVote().fit_predict(answers)[1] == "dog"
    weighted = answers.assign(weight=[5.0, 1.0, 1.0])
    assert MajorityVote().fit_predict(weighted)[1] == "cat"


def test_string_tie_goes_to_lowest_class() -> None:
    answers = pd.DataFrame({"task": [1, 1], "worker": ["a", "b"], "label": ["dog", "cat"]})
    assert MajorityVote().fit_predict(answers)[1] == "cat"


def test_mixed_label_types_get_a_deterministic_order() -> None:
    answers = pd.DataFrame(
        {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": ["x", 3, 3, 3]}
    )
    agg = MajorityVote().fit(answers)
    assert agg.classes_ == [3, "x"]  # unorderable mix: sorted by (type name, text)
    assert agg.labels_.to_dict() == {1: 3, 2: 3}


def test_classes_must_not_hold_missing_values() -> None:
    answers = pd.DataFrame({"task": [1], "worker": ["a"], "label": [0]})
    with pytest.raises(InvalidInputError, match="classes"):
        MajorityVote(classes=[0, None]).fit(answers)


def test_float_weight_near_tie_is_a_tie() -> None:
    # 0.1 + 0.2 != 0.3 in floating point; still a tie, so class 0 wins
    answers = pd.DataFrame(
        {
            "task": [1, 1, 1],
            "worker": ["a", "b", "c"],
            "label": [1, 1, 0],
            "weight": [0.1, 0.2, 0.3],
        }
    )
    assert MajorityVote().fit_predict(answers)[1] == 0


def test_all_zero_weight_task_is_uniform() -> None:
    answers = pd.DataFrame(
        {"task": [1, 2], "worker": ["a", "a"], "label": [0, 1], "weight": [0.0, 1.0]}
    )
    probas = MajorityVote().fit_predict_proba(answers)
    assert probas.loc[1].tolist() == [0.5, 0.5]
    assert probas.loc[2].tolist() == [0.0, 1.0]


def test_known_overrides_vote() -> None:
    answers = pd.DataFrame({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 0, 1]})
    agg = MajorityVote().fit(answers, known=pd.Series({1: 1}))
    assert agg.labels_.to_dict() == {1: 1, 2: 1}
    assert agg.probas_.loc[1].tolist() == [0.0, 1.0]


def test_real_data_majority_vote_accuracy(crowd_dir: Path) -> None:
    folder = crowd_dir / "zheng_D_Product"
    answers = pd.read_csv(folder / "answers.csv")
    gold = pd.read_csv(folder / "gold.csv").set_index("task")["label"]
    labels = MajorityVote().fit_predict(answers)
    accuracy = float((labels.reindex(gold.index) == gold).mean())
    assert accuracy == pytest.approx(0.897, abs=0.005)  # published MV accuracy


def test_validate_answers_returns_clean_copy() -> None:
    raw = pd.DataFrame(
        {"task": [1, 2], "worker": ["a", "b"], "label": [0, 1], "source": ["crowd", "crowd"]},
        index=[10, 20],
    )
    clean = validate_answers(raw)
    assert list(clean.index) == [0, 1]
    assert list(clean.columns) == ["task", "worker", "label", "source"]
    clean.loc[0, "label"] = 5
    assert raw.loc[10, "label"] == 0


def test_validate_answers_coerces_integer_weights() -> None:
    raw = pd.DataFrame({"task": [1], "worker": ["a"], "label": [0], "weight": [2]})
    assert validate_answers(raw)["weight"].dtype == np.float64


def test_validate_answers_messages_name_the_problem() -> None:
    with pytest.raises(InvalidInputError, match=r"\['worker'\]"):
        validate_answers(pd.DataFrame({"task": [1], "label": [0]}))
    with pytest.raises(InvalidInputError, match="numeric"):
        validate_answers(
            pd.DataFrame({"task": [1], "worker": ["a"], "label": [0], "weight": ["x"]})
        )
