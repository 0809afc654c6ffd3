"""Task planning with gold honeypots, and per-worker gold accuracy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medloop.annotation import TaskPlan, gold_accuracy, plan_tasks, wilson_interval
from medloop.exceptions import InvalidInputError


def test_gold_fraction_and_contents() -> None:
    items = list(range(90))
    gold = list(range(1000, 1050))
    plans = plan_tasks(items, redundancy=5, gold_item_ids=gold, gold_rate=0.1, seed=1)
    assert len(plans) == 100
    gold_plans = [p for p in plans if p.is_gold]
    assert len(gold_plans) == 10
    assert {p.item_id for p in gold_plans} <= set(gold)
    assert len({p.item_id for p in gold_plans}) == 10  # no gold item twice
    assert sorted(p.item_id for p in plans if not p.is_gold) == items
    assert all(p.redundancy == 5 for p in plans)
    assert all(isinstance(p, TaskPlan) for p in plans)
    # interleaved: gold plans are not bunched at one end
    positions = [i for i, p in enumerate(plans) if p.is_gold]
    assert positions[0] < 50 < positions[-1]


@pytest.mark.parametrize(("n_items", "rate", "expected"), [(300, 0.25, 100), (10, 0.5, 10)])
def test_gold_rate_is_share_of_all_plans(n_items: int, rate: float, expected: int) -> None:
    plans = plan_tasks(list(range(n_items)), gold_item_ids=list(range(-200, 0)), gold_rate=rate)
    n_gold = sum(p.is_gold for p in plans)
    assert n_gold == expected
    assert n_gold / len(plans) == pytest.approx(rate)


def test_gold_capped_by_available_gold_items() -> None:
    plans = plan_tasks(list(range(100)), gold_item_ids=[500, 501], gold_rate=0.5)
    assert sorted(p.item_id for p in plans if p.is_gold) == [500, 501]


def test_no_gold_when_none_available_or_rate_zero() -> None:
    assert not any(p.is_gold for p in plan_tasks(list(range(20)), gold_rate=0.3))
    plans = plan_tasks(list(range(20)), gold_item_ids=[99], gold_rate=0.0)
    assert not any(p.is_gold for p in plans)
    assert plan_tasks([], gold_item_ids=[1, 2]) == []


def test_deterministic_under_seed() -> None:
    kwargs = {"gold_item_ids": list(range(100, 140)), "gold_rate": 0.2}
    first = plan_tasks(list(range(50)), seed=3, **kwargs)  # type: ignore[arg-type]
    second = plan_tasks(list(range(50)), seed=3, **kwargs)  # type: ignore[arg-type]
    other = plan_tasks(list(range(50)), seed=4, **kwargs)  # type: ignore[arg-type]
    assert first == second
    assert first != other


def test_numpy_ids_become_ints() -> None:
    plans = plan_tasks(np.array([3, 1, 2]), gold_rate=0.0)
    assert sorted(p.item_id for p in plans) == [1, 2, 3]
    assert all(type(p.item_id) is int for p in plans)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"redundancy": 0}, "redundancy"),
        ({"gold_rate": 1.0}, "gold_rate"),
        ({"gold_rate": -0.1}, "gold_rate"),
        ({"gold_item_ids": [7, 7]}, "duplicates"),
        ({"gold_item_ids": [1]}, "both"),
    ],
)
def test_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plan_tasks([1, 2, 3], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="duplicates"):
        plan_tasks([1, 1])


def test_wilson_known_values() -> None:
    low, high = wilson_interval(np.array([8, 0, 10, 0]), np.array([10, 10, 10, 0]))
    assert low[:3] == pytest.approx([0.4902, 0.0, 0.7225], abs=1e-4)
    assert high[:3] == pytest.approx([0.9433, 0.2775, 1.0], abs=1e-4)
    assert (low[3], high[3]) == (0.0, 1.0)
    with pytest.raises(InvalidInputError, match="correct <= n"):
        wilson_interval(np.array([5]), np.array([4]))


def test_gold_accuracy_per_worker() -> None:
    gold = pd.Series({1: 0, 2: 1, 3: 1, 4: 0, 5: 1, 6: 0, 7: 1, 8: 0, 9: 1, 10: 0})
    rows = [(t, "ann", label) for t, label in gold.items()]  # ann: 10/10
    rows += [(t, "bob", label if t <= 8 else 1 - label) for t, label in gold.items()]  # 8/10
    rows += [(t, "cy", 1 - label) for t, label in list(gold.items())[:4]]  # 0/4
    rows += [(100, "dee", 1), (101, "ann", 0)]  # non-gold answers
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    table = gold_accuracy(answers, gold)
    assert list(table.columns) == ["worker", "n_gold", "correct", "accuracy", "ci_low", "ci_high"]
    table = table.set_index("worker")
    assert table.loc["ann", ["n_gold", "correct", "accuracy"]].tolist() == [10, 10, 1.0]
    assert table.loc["bob", ["n_gold", "correct", "accuracy"]].tolist() == [10, 8, 0.8]
    assert table.loc["bob", "ci_low"] == pytest.approx(0.4902, abs=1e-4)
    assert table.loc["bob", "ci_high"] == pytest.approx(0.9433, abs=1e-4)
    assert table.loc["cy", ["n_gold", "correct"]].tolist() == [4, 0]
    assert table.loc["cy", "ci_high"] == pytest.approx(0.4899, abs=1e-4)
    assert table.loc["dee", "n_gold"] == 0
    assert math.isnan(table.loc["dee", "accuracy"])
    assert table.loc["dee", ["ci_low", "ci_high"]].tolist() == [0.0, 1.0]


def test_gold_accuracy_string_labels_and_bad_input() -> None:
    answers = pd.DataFrame({"task": ["a", "b"], "worker": ["w", "w"], "label": ["cat", "dog"]})
    table = gold_accuracy(answers, pd.Series({"a": "cat", "b": "cat"}))
    assert table[["n_gold", "correct", "accuracy"]].iloc[0].tolist() == [2, 1, 0.5]
    with pytest.raises(InvalidInputError, match="missing"):
        gold_accuracy(answers.drop(columns="worker"), pd.Series({"a": "cat"}))
