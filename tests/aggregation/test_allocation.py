"""Cost-aware allocation: expected risk after answers, and the plan within a budget."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation.allocation import (
    Action,
    combine_beliefs,
    expected_risk,
    mean_confusion,
    plan_labelling,
    symmetric_confusion,
)
from medloop.exceptions import InvalidInputError

LAY = symmetric_confusion(0.7, 2)


def _risk_by_sequences(p: np.ndarray, e: np.ndarray, n: int, q: np.ndarray | None = None) -> float:
    """Expected risk of the label argmax(q | answers) under p, by enumerating every ordered
    answer sequence (q = p: the Bayes risk)."""
    q = p if q is None else q
    kept = 0.0
    for sequence in itertools.product(range(len(p)), repeat=n):
        likelihood = np.prod([e[:, label] for label in sequence], axis=0)
        kept += (p * likelihood)[np.argmax(q * likelihood)]
    return 1.0 - kept


def test_expected_risk_known_values() -> None:
    p = np.array([[0.5, 0.5], [0.8, 0.2], [1.0, 0.0]])
    assert expected_risk(p, LAY, 0) == pytest.approx([0.5, 0.2, 0.0])
    # a perfect annotator removes all risk; a coin flip removes none
    assert expected_risk(p, np.eye(2), 1) == pytest.approx([0.0, 0.0, 0.0])
    assert expected_risk(p, np.full((2, 2), 0.5), 4) == pytest.approx([0.5, 0.2, 0.0])
    # three answers on a 50/50 item: wrong exactly when the majority is wrong
    a = 0.7
    assert expected_risk(p[:1], LAY, 3)[0] == pytest.approx(1 - (a**3 + 3 * a**2 * (1 - a)))


def test_expected_risk_matches_enumerating_answer_sequences() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=5)
    e = rng.dirichlet(np.ones(3) * 2, size=3) + np.eye(3)
    e /= e.sum(axis=1, keepdims=True)
    for n in (1, 2, 3):
        brute = [_risk_by_sequences(row, e, n) for row in p]
        assert expected_risk(p, e, n) == pytest.approx(brute, abs=1e-12)


def test_the_label_kept_is_the_crowds_and_the_risk_is_judged_by_the_belief() -> None:
    # the model is sure of class 0, the crowd's label so far is class 1 (0.8)
    p, q = np.array([[0.9, 0.1]]), np.array([[0.2, 0.8]])
    assert expected_risk(p, LAY, 0, label_probas=q) == pytest.approx([0.9])
    assert expected_risk(p, np.eye(2), 1, label_probas=q) == pytest.approx([0.0])
    # one 70% answer cannot overturn the crowd; three can, only by all saying 0
    assert expected_risk(p, LAY, 1, label_probas=q) == pytest.approx([0.9])
    kept = 0.9 * 0.7**3 + 0.1 * (1 - 0.3**3)
    assert expected_risk(p, LAY, 3, label_probas=q) == pytest.approx([1 - kept])
    rng = np.random.default_rng(4)
    beliefs, labels = rng.dirichlet(np.ones(3), size=6), rng.dirichlet(np.ones(3), size=6)
    e = symmetric_confusion(0.6, 3)
    for n in (1, 2, 3):
        brute = [_risk_by_sequences(b, e, n, c) for b, c in zip(beliefs, labels, strict=True)]
        assert expected_risk(beliefs, e, n, label_probas=labels) == pytest.approx(brute, abs=1e-12)


def test_a_label_the_model_contradicts_is_planned_before_one_it_confirms() -> None:
    belief = pd.DataFrame([[0.9, 0.1], [0.9, 0.1]], index=["contradicted", "confirmed"])
    crowd = pd.DataFrame([[0.2, 0.8], [0.8, 0.2]], index=belief.index)
    plan = plan_labelling(
        belief, label_probas=crowd, lay_confusion=LAY, doctor_cost=5.0, budget=100.0
    )
    assert plan.index.tolist() == ["contradicted", "confirmed"]
    assert plan["risk"].tolist() == pytest.approx([0.9, 0.1])
    tight = plan_labelling(
        belief, label_probas=crowd, lay_confusion=LAY, doctor_cost=5.0, budget=5.0
    )
    assert tight.index.tolist() == ["contradicted"]
    # judged by the belief alone both items look equally settled
    alone = plan_labelling(belief, lay_confusion=LAY, doctor_cost=5.0, budget=100.0)
    assert alone.loc["contradicted", "risk"] == alone.loc["confirmed", "risk"]
    with pytest.raises(InvalidInputError, match="same items"):
        plan_labelling(belief, label_probas=crowd.iloc[:1], lay_confusion=LAY, budget=1.0)


def test_more_answers_never_raise_the_expected_risk() -> None:
    p = np.random.default_rng(1).dirichlet(np.ones(2), size=50)
    risks = np.stack([expected_risk(p, LAY, n) for n in range(6)])
    assert np.all(np.diff(risks, axis=0) <= 1e-12)


def test_short_money_buys_lay_answers_and_money_to_spare_buys_the_dear_doctor() -> None:
    belief = pd.DataFrame([[0.5, 0.5], [0.6, 0.4]], index=["a", "b"], columns=[0, 1])
    short = plan_labelling(belief, lay_confusion=LAY, doctor_cost=50.0, budget=10.0)
    assert set(short["action"]) == {Action.CROWD} and short["cost"].sum() <= 10.0
    ample = plan_labelling(belief, lay_confusion=LAY, doctor_cost=50.0, budget=100.0)
    assert ample["action"].tolist() == [Action.DOCTOR, Action.DOCTOR]
    assert ample.loc["a", "expected_risk"] == pytest.approx(0.03)  # her error rate
    coin = np.full((2, 2), 0.5)
    noise = plan_labelling(belief, lay_confusion=coin, doctor_cost=50.0, budget=60.0)
    assert noise.index.tolist() == ["a"]  # a useless crowd: the more open item's doctor
    assert noise.loc["a", "action"] == Action.DOCTOR
    # a doctor as cheap as one lay answer and more accurate always wins
    cheap_doctor = plan_labelling(belief, lay_confusion=LAY, doctor_cost=1.0, budget=10.0)
    assert set(cheap_doctor["action"]) == {Action.DOCTOR}


def test_money_left_after_the_best_first_requests_upgrades_items() -> None:
    belief = pd.DataFrame([[0.5, 0.5]], index=["open"], columns=[0, 1])
    cheap = plan_labelling(belief, lay_confusion=LAY, doctor_cost=4.0, budget=3.0)
    assert cheap[["action", "answers"]].values.tolist() == [[Action.CROWD, 1]]
    upgraded = plan_labelling(belief, lay_confusion=LAY, doctor_cost=4.0, budget=4.0)
    assert upgraded[["action", "answers"]].values.tolist() == [[Action.DOCTOR, 1]]
    assert upgraded["gain"].iloc[0] > cheap["gain"].iloc[0]


def test_plan_spends_within_budget_and_skips_what_no_answer_changes() -> None:
    rng = np.random.default_rng(2)
    belief = pd.DataFrame(rng.dirichlet([1, 1], size=200))
    belief.loc[200] = [1.0, 0.0]  # certain already
    plan = plan_labelling(belief, lay_confusion=LAY, doctor_cost=8.0, budget=60.0)
    assert plan["cost"].sum() <= 60.0
    assert 200 not in plan.index
    assert (plan["gain"] > 0).all()
    assert np.allclose(plan["gain"], plan["risk"] - plan["expected_risk"])
    assert plan_labelling(belief, lay_confusion=LAY, budget=0.0).empty


def _first_request_cost(p: np.ndarray, *, doctor_cost: float) -> float:
    """Cost of an item's best request per unit of cost (lay answers at 1, a doctor)."""
    risk = 1 - p.max()
    costs = [doctor_cost, 1, 2, 3, 4, 5]
    gains = [risk - 0.03] + [risk - expected_risk(p[None], LAY, n)[0] for n in range(1, 6)]
    ratios = np.round(np.asarray(gains) / costs, 12)
    return float(max(c for c, r in zip(costs, ratios, strict=True) if r == ratios.max()))


def test_plan_leaves_out_only_items_whose_first_request_no_longer_fits() -> None:
    belief = pd.DataFrame(np.random.default_rng(3).dirichlet([4, 1], size=300))
    everything = plan_labelling(belief, lay_confusion=LAY, doctor_cost=8.0, budget=1e9)
    removed = []
    for budget in (20.0, 154.0, 700.0, 1e9):
        plan = plan_labelling(belief, lay_confusion=LAY, doctor_cost=8.0, budget=budget)
        left = budget - plan["cost"].sum()
        assert left >= -1e-9
        left_out = everything.index.difference(plan.index)
        costs = [_first_request_cost(belief.loc[i].to_numpy(), doctor_cost=8.0) for i in left_out]
        assert all(cost > left for cost in costs)
        removed.append(plan["gain"].sum())
    assert len(everything) == 284 and removed == sorted(removed)  # more money, more removed


def test_plan_rejects_bad_input() -> None:
    belief = pd.DataFrame([[0.5, 0.5]], columns=[0, 1])
    with pytest.raises(InvalidInputError, match="lay_cost"):
        plan_labelling(belief, lay_confusion=LAY, lay_cost=0.0, budget=1.0)
    with pytest.raises(InvalidInputError, match="budget"):
        plan_labelling(belief, lay_confusion=LAY, budget=-1.0)
    with pytest.raises(InvalidInputError, match="lay_confusion"):
        plan_labelling(belief, lay_confusion=np.eye(3), budget=1.0)
    with pytest.raises(InvalidInputError, match="sum to 1"):
        plan_labelling(belief * 2, lay_confusion=LAY, budget=1.0)
    with pytest.raises(InvalidInputError, match="duplicate"):
        plan_labelling(pd.concat([belief, belief]), lay_confusion=LAY, budget=1.0)
    with pytest.raises(InvalidInputError, match="accuracy"):
        plan_labelling(belief, lay_confusion=LAY, doctor_accuracy=1.5, budget=1.0)


def test_combine_beliefs_multiplies_independent_evidence() -> None:
    crowd = pd.DataFrame([[0.8, 0.2], [0.5, 0.5]], index=["both", "crowd only"], columns=[0, 1])
    model = pd.DataFrame([[0.8, 0.2], [0.1, 0.9]], index=["both", "model only"], columns=[1, 0])
    model = model[[0, 1]]  # same classes, any column order
    combined = combine_beliefs(crowd, model, prior=[0.5, 0.5])
    # crowd says 0.8 for class 0, model 0.2: the evidence cancels out
    assert combined.loc["both"].tolist() == pytest.approx([0.5, 0.5])
    assert combined.loc["crowd only"].tolist() == pytest.approx([0.5, 0.5])
    assert combined.loc["model only"].tolist() == pytest.approx([0.9, 0.1])
    assert combine_beliefs(crowd, None, prior=[0.5, 0.5]).equals(crowd.astype(float))
    with pytest.raises(InvalidInputError, match="differ"):
        combine_beliefs(crowd, model.rename(columns={0: "x"}), prior=[0.5, 0.5])
    with pytest.raises(InvalidInputError, match="prior"):
        combine_beliefs(crowd, model, prior=[1.0, 0.0])


def test_mean_confusion_weighs_workers() -> None:
    errors = np.stack([np.eye(2), np.full((2, 2), 0.5)])
    assert mean_confusion(errors).tolist() == [[0.75, 0.25], [0.25, 0.75]]
    assert np.allclose(mean_confusion(errors, [3, 1]), [[0.875, 0.125], [0.125, 0.875]])
    with pytest.raises(InvalidInputError):
        mean_confusion(errors, [0, 0])
