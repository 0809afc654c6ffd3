"""Known-answer tests for EBCC (enhanced Bayesian classifier combination)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import EBCC, MajorityVote, make_aggregator
from medloop.exceptions import InvalidInputError


def _crowd(accuracies: list[float], *, n_tasks: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """Binary crowd: everybody answers every task, right with their accuracy."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_tasks)
    acc = np.array(accuracies)
    task = np.repeat(np.arange(n_tasks), len(acc))
    worker = np.tile(np.arange(len(acc)), n_tasks)
    right = rng.random(len(task)) < acc[worker]
    label = np.where(right, truth[task], 1 - truth[task])
    answers = pd.DataFrame({"task": task, "worker": [f"w{w}" for w in worker], "label": label})
    return answers, pd.Series(truth, index=pd.RangeIndex(n_tasks, name="task"))


SKILLS = [0.95, 0.9, 0.55, 0.5, 0.5]


def test_beats_majority_vote_and_recovers_confusion_matrices() -> None:
    answers, truth = _crowd(SKILLS, n_tasks=500, seed=0)
    mv = (MajorityVote().fit_predict(answers).reindex(truth.index) == truth).mean()
    model = EBCC().fit(answers)
    accuracy = (model.labels_.reindex(truth.index) == truth).mean()
    assert mv < 0.9
    assert accuracy > 0.95
    # the diagonal of each worker's mean confusion matrix is its accuracy
    diagonal = model.errors_[:, [0, 1], [0, 1]].mean(axis=1)
    assert diagonal == pytest.approx(SKILLS, abs=0.06)
    assert model.priors_.sum() == pytest.approx(1.0)
    assert model.subtype_weights_.shape == (2, 2)
    assert np.allclose(model.subtype_weights_.sum(axis=1), 1.0)


def test_keeps_the_restart_with_the_highest_elbo_and_is_seeded() -> None:
    answers, _ = _crowd(SKILLS, n_tasks=200, seed=1)
    model = EBCC(n_restarts=3).fit(answers)
    assert len(model.elbos_) == 3
    assert model.elbo_ == max(model.elbos_)
    again = EBCC(n_restarts=3).fit(answers)
    pd.testing.assert_frame_equal(model.probas_, again.probas_)
    single = EBCC(n_restarts=1, seed=int(np.argmax(model.elbos_))).fit(answers)
    pd.testing.assert_frame_equal(model.probas_, single.probas_)


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
    labels = EBCC().fit_predict(answers, known=known)
    assert (labels.to_numpy() == tasks % 2).all()
    flipped = EBCC().fit_predict(answers, known=1 - known)
    assert (flipped.to_numpy() == 1 - tasks % 2).all()


def test_registry_and_bad_parameters() -> None:
    assert isinstance(make_aggregator("ebcc"), EBCC)
    answers, _ = _crowd(SKILLS, n_tasks=10, seed=2)
    for params in (
        {"n_subtypes": 0},
        {"n_restarts": 0},
        {"subtype_prior": 0.0},
        {"diagonal_prior": -1.0},
        {"empirical_class_prior": "yes"},
    ):
        with pytest.raises(InvalidInputError):
            EBCC(**params).fit(answers)
