"""Known-answer tests for minimax conditional entropy (worker and item confusion)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import MajorityVote, MinimaxEntropy, make_aggregator
from medloop.exceptions import InvalidInputError

# two experts outvoted by three near-random workers
SKILLS = [0.95, 0.9, 0.55, 0.5, 0.5]


def _crowd(n_tasks: int, *, n_classes: int = 3, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Everybody answers every task; right with their skill, else a random other class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_tasks)
    skill = np.array(SKILLS)
    task = np.repeat(np.arange(n_tasks), len(skill))
    worker = np.tile(np.arange(len(skill)), n_tasks)
    right = rng.random(len(task)) < skill[worker]
    wrong = (truth[task] + rng.integers(1, n_classes, len(task))) % n_classes
    label = np.where(right, truth[task], wrong)
    answers = pd.DataFrame({"task": task, "worker": [f"w{w}" for w in worker], "label": label})
    return answers, pd.Series(truth, index=pd.RangeIndex(n_tasks, name="task"))


def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.reindex(truth.index) == truth).mean())


def test_beats_majority_vote_and_ranks_the_workers() -> None:
    answers, truth = _crowd(400, seed=1)
    model = MinimaxEntropy().fit(answers)
    mv = _accuracy(MajorityVote().fit_predict(answers), truth)
    assert mv < 0.9
    assert _accuracy(model.labels_, truth) > 0.92
    accuracy = model.worker_accuracy_
    assert accuracy.idxmax() == "w0"
    assert accuracy[["w0", "w1"]].min() > accuracy[["w2", "w3", "w4"]].max()
    assert model.errors_.shape == (5, 3, 3)
    assert np.allclose(model.errors_.sum(axis=2), 1.0)
    assert model.task_logits_.shape == (400, 3, 3)
    assert model.converged_


def test_known_labels_anchor_the_workers() -> None:
    # two workers always disagree; the known tasks say which one is right
    tasks = np.arange(40)
    answers = pd.DataFrame(
        {
            "task": np.concatenate([tasks, tasks]),
            "worker": ["good"] * 40 + ["bad"] * 40,
            "label": np.concatenate([tasks % 2, 1 - tasks % 2]),
        }
    )
    known = pd.Series({t: t % 2 for t in range(10)})
    labels = MinimaxEntropy().fit_predict(answers, known=known)
    assert (labels.to_numpy() == tasks % 2).all()
    flipped = MinimaxEntropy().fit_predict(answers, known=1 - known)
    assert (flipped.to_numpy() == 1 - tasks % 2).all()


def test_a_weight_of_two_counts_as_the_answer_given_twice() -> None:
    answers, _ = _crowd(60, seed=2)
    doubled = pd.concat([answers, answers[answers["worker"] == "w2"]], ignore_index=True)
    weighted = answers.assign(weight=np.where(answers["worker"] == "w2", 2.0, 1.0))
    by_weight = MinimaxEntropy().fit_predict_proba(weighted)
    by_copies = MinimaxEntropy().fit_predict_proba(doubled)
    pd.testing.assert_frame_equal(by_weight, by_copies, atol=1e-4)


def test_a_warm_start_from_an_earlier_fit_gives_the_cold_answer() -> None:
    """Stopped when no posterior moved by 5e-3, warm and cold fits differed by 1e-2."""
    rng = np.random.default_rng(1)
    skill = rng.uniform(0.4, 0.9, 20)
    truth = rng.integers(0, 3, 300)
    task = np.repeat(np.arange(300), 3)
    worker = np.concatenate([rng.choice(20, 3, replace=False) for _ in range(300)])
    right = rng.random(len(task)) < skill[worker]
    wrong = (truth[task] + rng.integers(1, 3, len(task))) % 3
    answers = pd.DataFrame(
        {"task": task, "worker": worker, "label": np.where(right, truth[task], wrong)}
    )
    earlier = MinimaxEntropy().fit(answers[answers["task"] < 250])
    warm = MinimaxEntropy().fit(answers, init=earlier)
    cold = MinimaxEntropy().fit(answers)
    assert cold.converged_
    assert np.abs(warm.probas_ - cold.probas_).to_numpy().max() < 1e-3


def test_deterministic_and_in_the_registry() -> None:
    answers, _ = _crowd(50, seed=3)
    first = MinimaxEntropy().fit_predict_proba(answers)
    pd.testing.assert_frame_equal(first, MinimaxEntropy().fit_predict_proba(answers))
    assert isinstance(make_aggregator("minimax_entropy"), MinimaxEntropy)


@pytest.mark.parametrize(
    "params",
    [
        {"n_iter": 0},
        {"m_step_iter": 0},
        {"tol": -1.0},
        {"worker_penalty": -1.0},
        {"task_penalty": float("nan")},
        {"diagonal_prior": -0.1},
    ],
)
def test_bad_parameters(params: dict[str, float]) -> None:
    answers, _ = _crowd(10, seed=4)
    with pytest.raises(InvalidInputError):
        MinimaxEntropy(**params).fit(answers)  # type: ignore[arg-type]
