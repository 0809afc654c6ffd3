"""Routing: done / crowd / doctor, and the most informative next annotator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import MACE, DawidSkene, OneCoinDawidSkene
from medloop.aggregation.routing import (
    Route,
    confusion_matrices,
    information_gain,
    next_annotator,
    route_tasks,
)
from medloop.exceptions import InvalidInputError

PROBAS = pd.DataFrame(
    [[0.99, 0.01], [0.6, 0.4], [0.55, 0.45], [0.5, 0.5]],
    index=pd.Index(["sure", "open", "exhausted", "conflict"], name="task"),
    columns=[0, 1],
)


def test_route_tasks() -> None:
    counts = pd.Series({"sure": 3, "open": 3, "exhausted": 7, "conflict": 2})
    routes = route_tasks(PROBAS, counts, confident=0.95, max_answers=7, doctor_below=0.51)
    assert routes.to_dict() == {
        "sure": Route.DONE,
        "open": Route.CROWD,
        "exhausted": Route.DOCTOR,
        "conflict": Route.DOCTOR,
    }
    with pytest.raises(InvalidInputError):
        route_tasks(PROBAS, counts, confident=0.0)


def test_information_gain_known_values() -> None:
    perfect = np.eye(2)[None]
    coin = np.full((1, 2, 2), 0.5)
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    gain = information_gain(p, np.concatenate([perfect, coin]))
    # a perfect annotator on a 50/50 task reveals log 2 nats; a coin flip reveals nothing;
    # nobody adds information to a task already certain
    assert gain[0, 0] == pytest.approx(np.log(2))
    assert gain[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert gain[1] == pytest.approx([0.0, 0.0], abs=1e-12)
    # a 90%-accurate annotator: log 2 - H(0.1)
    good = np.array([[[0.9, 0.1], [0.1, 0.9]]])
    h = -(0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert information_gain(p[:1], good)[0, 0] == pytest.approx(np.log(2) - h)


def test_next_annotator_prefers_skill_and_skips_who_answered() -> None:
    errors = np.array([[[0.95, 0.05], [0.05, 0.95]], [[0.7, 0.3], [0.3, 0.7]]])
    workers = pd.Index(["expert", "novice"])
    choice = next_annotator(PROBAS, errors, workers)
    assert (choice["worker"] == "expert").all()
    answered = pd.DataFrame(
        {"task": ["open", "sure", "sure"], "worker": ["expert"] * 2 + ["novice"]}
    )
    choice = next_annotator(PROBAS, errors, workers, answered=answered)
    assert choice.loc["open", "worker"] == "novice"
    assert pd.isna(choice.loc["sure", "worker"]) and choice.loc["sure", "gain"] == 0.0


@pytest.mark.parametrize("factory", [DawidSkene, OneCoinDawidSkene, MACE])
def test_confusion_matrices_from_models(factory: type) -> None:
    answers = pd.DataFrame(
        {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 1]}
    )
    model = factory().fit(answers)
    workers, errors = confusion_matrices(model)
    assert list(workers) == ["a", "b", "c"]
    assert errors.shape == (3, 2, 2)
    assert np.allclose(errors.sum(axis=2), 1.0)


def test_a_task_without_an_answer_count_is_refused_not_counted_as_none() -> None:
    """Counts given by position (a list) lost their tasks and read as 0 answers, so unsure
    tasks past max_answers kept going to the crowd instead of a doctor."""
    probas = pd.DataFrame({0: [0.5, 0.6], 1: [0.5, 0.4]}, index=["a", "b"])
    with pytest.raises(InvalidInputError, match=r"no count for 2 task\(s\)"):
        route_tasks(probas, [9, 9], max_answers=7)
    routes = route_tasks(probas, {"a": 9, "b": 9}, max_answers=7)
    assert routes.tolist() == ["doctor", "doctor"]
