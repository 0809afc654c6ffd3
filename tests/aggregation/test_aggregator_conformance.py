"""One conformance suite run over every aggregator (crowd-kit style)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import (
    EBCC,
    GLAD,
    MACE,
    Aggregator,
    DawidSkene,
    MajorityVote,
    MinimaxEntropy,
    OneCoinDawidSkene,
    Wawa,
)
from medloop.exceptions import InvalidInputError, NotFittedError

Factory = Callable[..., Aggregator]

AGGREGATORS: dict[str, Factory] = {
    "MajorityVote": MajorityVote,
    "DawidSkene": DawidSkene,
    "Wawa": Wawa,
    "OneCoinDawidSkene": OneCoinDawidSkene,
    "GLAD": GLAD,
    "MACE": MACE,
    "EBCC": EBCC,
    "MinimaxEntropy": MinimaxEntropy,
}


@pytest.fixture(params=sorted(AGGREGATORS))
def make(request: pytest.FixtureRequest) -> Factory:
    return AGGREGATORS[request.param]


def _frame(rows: list[tuple[object, object, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["task", "worker", "label"])


TOY = _frame(
    [
        (1, "a", 0),
        (1, "b", 0),
        (1, "c", 1),
        (2, "a", 1),
        (2, "b", 1),
        (2, "c", 1),
        (3, "a", 2),
        (3, "b", 2),
        (3, "c", 0),
        (4, "a", 0),
        (4, "b", 0),
        (4, "c", 0),
    ]
)
TOY_TRUTH = {1: 0, 2: 1, 3: 2, 4: 0}


def _check_contract(agg: Aggregator, answers: pd.DataFrame) -> None:
    probas = agg.probas_
    labels = agg.labels_
    assert probas.index.name == "task"
    assert labels.index.name == "task"
    assert list(probas.columns) == list(agg.classes_)
    assert labels.index.equals(probas.index)
    assert set(probas.index) == set(answers["task"])
    assert np.allclose(probas.sum(axis=1), 1.0)
    assert (probas.to_numpy() >= 0).all()
    assert not probas.isna().any().any()
    # predictions are the argmax of the probabilities
    argmax = probas.to_numpy().argmax(axis=1)
    assert labels.tolist() == [agg.classes_[i] for i in argmax]


def test_fit_returns_self_and_contract(make: Factory) -> None:
    agg = make()
    assert agg.fit(TOY) is agg
    _check_contract(agg, TOY)
    assert agg.labels_.to_dict() == TOY_TRUTH
    assert agg.classes_ == [0, 1, 2]


def test_fit_predict_and_proba_agree_with_fit(make: Factory) -> None:
    labels = make().fit_predict(TOY)
    probas = make().fit_predict_proba(TOY)
    fitted = make().fit(TOY)
    pd.testing.assert_series_equal(labels, fitted.labels_)
    pd.testing.assert_frame_equal(probas, fitted.probas_)


def test_not_fitted_error(make: Factory) -> None:
    agg = make()
    with pytest.raises(NotFittedError, match="fit"):
        _ = agg.labels_
    with pytest.raises(NotFittedError):
        _ = agg.probas_
    assert not hasattr(agg, "classes_")  # NotFittedError is an AttributeError


def test_deterministic_and_order_invariant(make: Factory) -> None:
    shuffled = TOY.sample(frac=1.0, random_state=3)
    first = make().fit_predict_proba(TOY)
    second = make().fit_predict_proba(shuffled)
    pd.testing.assert_frame_equal(first, second)


def test_unanimous_answers(make: Factory) -> None:
    answers = _frame([(t, w, t % 2) for t in range(6) for w in "abc"])
    agg = make().fit(answers)
    _check_contract(agg, answers)
    assert agg.labels_.tolist() == [t % 2 for t in range(6)]
    chosen = agg.probas_.to_numpy()[np.arange(6), [t % 2 for t in range(6)]]
    assert (chosen > 0.9).all()


def test_single_worker(make: Factory) -> None:
    answers = _frame([(t, "solo", label) for t, label in enumerate([0, 1, 1, 0, 1])])
    agg = make().fit(answers)
    _check_contract(agg, answers)
    assert agg.labels_.tolist() == [0, 1, 1, 0, 1]


def test_string_labels(make: Factory) -> None:
    answers = TOY.assign(label=TOY["label"].map({0: "normal", 1: "pneumonia", 2: "other"}))
    agg = make().fit(answers)
    _check_contract(agg, answers)
    assert agg.classes_ == ["normal", "other", "pneumonia"]
    assert agg.labels_.to_dict() == {1: "normal", 2: "pneumonia", 3: "other", 4: "normal"}


def test_string_tasks_and_integer_labels(make: Factory) -> None:
    answers = TOY.assign(task="t" + TOY["task"].astype(str))
    labels = make().fit_predict(answers)
    assert labels.to_dict() == {f"t{k}": v for k, v in TOY_TRUTH.items()}
    assert pd.api.types.is_integer_dtype(labels)


def test_class_nobody_chose(make: Factory) -> None:
    answers = TOY[TOY["label"] != 2]
    agg = make(classes=[0, 1, 2, 3]).fit(answers)
    _check_contract(agg, answers)
    assert agg.classes_ == [0, 1, 2, 3]
    assert list(agg.probas_.columns) == [0, 1, 2, 3]
    top = agg.probas_.max(axis=1)
    # minimax entropy shrinks its logits hard on four tasks: its rows stay near uniform
    margin = 1.0 if isinstance(agg, MinimaxEntropy) else 0.5
    assert (agg.probas_[3] < margin * top).all()
    assert set(agg.labels_) <= {0, 1}


def test_one_class_only(make: Factory) -> None:
    answers = _frame([(t, w, "x") for t in range(3) for w in "ab"])
    agg = make().fit(answers)
    _check_contract(agg, answers)
    assert agg.classes_ == ["x"]
    assert agg.labels_.tolist() == ["x", "x", "x"]
    assert np.allclose(agg.probas_.to_numpy(), 1.0)


def test_workers_with_a_single_answer(make: Factory) -> None:
    answers = _frame([(t, f"w{t}-{j}", t % 2) for t in range(5) for j in range(3)])
    agg = make().fit(answers)
    _check_contract(agg, answers)
    assert agg.labels_.tolist() == [0, 1, 0, 1, 0]


def test_known_labels_come_out_exactly(make: Factory) -> None:
    known = pd.Series({3: 1, 99: 2})  # task 3 contradicts the crowd; task 99 has no answers
    agg = make().fit(TOY, known=known)
    assert agg.labels_[3] == 1
    assert agg.labels_[99] == 2
    assert agg.probas_.loc[3].tolist() == [0.0, 1.0, 0.0]
    assert agg.probas_.loc[99].tolist() == [0.0, 0.0, 1.0]
    assert set(agg.labels_.index) == {1, 2, 3, 4, 99}
    assert pd.api.types.is_integer_dtype(agg.labels_.index)
    assert np.allclose(agg.probas_.sum(axis=1), 1.0)


def test_known_label_outside_answers_adds_a_class(make: Factory) -> None:
    agg = make().fit(TOY, known=pd.Series({1: 7}))
    assert agg.classes_ == [0, 1, 2, 7]
    assert agg.labels_[1] == 7


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (pd.DataFrame({"task": [1], "label": [0]}), "missing column"),
        (pd.DataFrame({"task": [], "worker": [], "label": []}), "empty"),
        (_frame([(1, "a", 0), (1, "b", None)]), "label"),
        (_frame([(1, "a", 0), (2, "b", np.nan)]), "label"),
        (_frame([(1, "a", 0), (None, "b", 1)]), "task"),
        (_frame([(1, "a", 0), (2, None, 1)]), "worker"),
        (_frame([(1, "a", 0), (2, "b", 1)]).assign(weight=[1.0, -1.0]), "non-negative"),
        (_frame([(1, "a", 0), (2, "b", 1)]).assign(weight=[1.0, np.nan]), "finite"),
    ],
    ids=["missing", "empty", "none-label", "nan-label", "nan-task", "nan-worker", "neg-w", "nan-w"],
)
def test_bad_input(make: Factory, answers: pd.DataFrame, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        make().fit(answers)


def test_bad_known(make: Factory) -> None:
    with pytest.raises(InvalidInputError, match="missing"):
        make().fit(TOY, known=pd.Series({1: None}))
    with pytest.raises(InvalidInputError, match="Series"):
        make().fit(TOY, known=[1, 2])  # type: ignore[arg-type, unused-ignore]


def test_not_a_dataframe(make: Factory) -> None:
    with pytest.raises(InvalidInputError, match="DataFrame"):
        make().fit([(1, "a", 0)])  # type: ignore[arg-type, unused-ignore]


def test_warm_start_reaches_the_same_answer(make: Factory) -> None:
    first = TOY[TOY["task"] != 4]
    earlier = make().fit(first)
    warm = make().fit(TOY, init=earlier)
    cold = make().fit(TOY)
    assert warm.labels_.to_dict() == cold.labels_.to_dict() == TOY_TRUTH
    # a probability frame works as well as a fitted aggregator
    again = make().fit(TOY, init=earlier.probas_)
    assert again.labels_.to_dict() == TOY_TRUTH


def test_repeated_answers_of_one_worker_are_said(caplog: pytest.LogCaptureFixture) -> None:
    """One annotator submitting the same task four times outvotes the others in every
    aggregator; crowd exports hold such repeats, so they are reported, not refused."""
    answers = pd.DataFrame(
        {"task": [1, 1, 1, 1, 1, 1], "worker": list("abcccc"), "label": [0, 0, 1, 1, 1, 1]}
    )
    with caplog.at_level("WARNING", logger="medloop.aggregation.base"):
        MajorityVote().fit(answers)
    assert "3 answers repeat a (task, worker) pair" in caplog.text
