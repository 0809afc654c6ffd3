"""Dawid-Skene: known-answer synthetic crowds, clamping, real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import DawidSkene, MajorityVote
from medloop.exceptions import InvalidInputError, UnknownOptionError


def _crowd(
    accuracies: dict[str, float],
    *,
    n_tasks: int,
    n_classes: int = 2,
    per_task: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.Series]:
    """Synthetic answers: each worker is right with its accuracy, else a random other class."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_tasks)
    names = np.array(list(accuracies))
    acc = np.array(list(accuracies.values()))
    if per_task is None:  # everybody answers everything
        task = np.repeat(np.arange(n_tasks), len(names))
        worker = np.tile(np.arange(len(names)), n_tasks)
    else:
        task = np.repeat(np.arange(n_tasks), per_task)
        worker = np.concatenate(
            [rng.choice(len(names), per_task, replace=False) for _ in range(n_tasks)]
        )
    right = rng.random(len(task)) < acc[worker]
    wrong = (truth[task] + rng.integers(1, n_classes, len(task))) % n_classes
    label = np.where(right, truth[task], wrong)
    answers = pd.DataFrame({"task": task, "worker": names[worker], "label": label})
    return answers, pd.Series(truth, index=pd.RangeIndex(n_tasks, name="task"))


def _accuracy(labels: pd.Series, truth: pd.Series) -> float:
    return float((labels.reindex(truth.index) == truth).mean())


GOOD_VS_BAD = {
    "good-1": 0.9,
    "good-2": 0.85,
    "adversary-1": 0.25,
    "adversary-2": 0.2,
    "random-1": 0.5,
    "random-2": 0.5,
    "random-3": 0.5,
}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_truth_better_than_majority_vote(seed: int) -> None:
    # good workers are outvoted by adversarial (worse than chance) and random ones
    answers, truth = _crowd(GOOD_VS_BAD, n_tasks=400, seed=seed)
    mv = _accuracy(MajorityVote().fit_predict(answers), truth)
    model = DawidSkene().fit(answers)
    ds = _accuracy(model.labels_, truth)
    assert mv < 0.65
    assert ds > 0.88
    acc = model.worker_accuracy_
    for worker, true_accuracy in GOOD_VS_BAD.items():
        assert acc[worker] == pytest.approx(true_accuracy, abs=0.08)
    # adversaries' confusion matrices are learned as mostly flipped
    for worker in ("adversary-1", "adversary-2"):
        errors = model.errors_[list(model.workers_).index(worker)]
        assert errors[0, 1] > 0.6 and errors[1, 0] > 0.6


@pytest.mark.parametrize("seed", [0, 3])
def test_gold_anchors_an_adversarial_majority(seed: int) -> None:
    # one good worker, two colluding adversaries: without gold, EM follows the adversaries
    crowd = {"good": 0.9, "adversary-1": 0.2, "adversary-2": 0.25, "random-1": 0.5, "random-2": 0.5}
    answers, truth = _crowd(crowd, n_tasks=600, seed=seed)
    known = truth.iloc[:60]  # 10% gold questions
    rest = truth.index[60:]
    free = DawidSkene().fit(answers)
    anchored = DawidSkene().fit(answers, known=known)
    assert _accuracy(free.labels_[rest], truth[rest]) < 0.2
    assert _accuracy(MajorityVote().fit_predict(answers)[rest], truth[rest]) < 0.5
    assert _accuracy(anchored.labels_[rest], truth[rest]) > 0.85
    assert anchored.worker_accuracy_["good"] > 0.8
    pd.testing.assert_series_equal(anchored.labels_[known.index], known, check_names=False)


def test_learned_attributes_are_consistent() -> None:
    answers, _ = _crowd({f"w{i}": 0.5 + 0.08 * i for i in range(6)}, n_tasks=300, n_classes=3)
    model = DawidSkene().fit(answers)
    k = len(model.classes_)
    assert model.errors_.shape == (6, k, k)
    assert np.allclose(model.errors_.sum(axis=2), 1.0)
    assert model.priors_.sum() == pytest.approx(1.0)
    assert list(model.priors_.index) == model.classes_
    frame = model.errors_frame_
    assert list(frame.columns) == ["worker", "true_label", "label", "probability"]
    assert len(frame) == 6 * k * k
    row = frame[(frame.worker == "w2") & (frame.true_label == 1) & (frame.label == 2)]
    assert row["probability"].item() == pytest.approx(model.errors_[2, 1, 2])
    assert np.allclose(frame.groupby(["worker", "true_label"])["probability"].sum(), 1.0)
    # the objective (log-likelihood + log-prior) never decreases under EM
    history = np.array(model.log_likelihood_)
    assert len(history) <= model.n_iter_ < 1000  # discarded extrapolations are not kept
    assert (np.diff(history) >= -1e-9 * np.abs(history[:-1])).all()
    assert model.converged_
    # better workers get higher estimated accuracy
    ranks = model.worker_accuracy_.loc[[f"w{i}" for i in range(6)]].rank().tolist()
    assert ranks == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


SPARSE = {f"w{i:02d}": 0.4 + 0.025 * i for i in range(20)}  # 3 of 20 workers per task


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fit_has_converged(seed: int) -> None:
    """The objective flattens long before the posteriors settle: a fit that stopped on
    it moved on by ~1e-2 in one more iteration (and a warm start ended elsewhere)."""
    answers, _ = _crowd(SPARSE, n_tasks=300, n_classes=3, per_task=3, seed=seed)
    model = DawidSkene().fit(answers)
    assert model.converged_
    one_more = DawidSkene(n_iter=1).fit(answers, init=model)
    assert np.abs(one_more.probas_ - model.probas_).to_numpy().max() < 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_warm_start_from_an_earlier_fit_gives_the_cold_answer(seed: int) -> None:
    answers, _ = _crowd(SPARSE, n_tasks=300, n_classes=3, per_task=3, seed=seed)
    earlier = DawidSkene().fit(answers[answers["task"] < 250])
    warm = DawidSkene().fit(answers, init=earlier)
    cold = DawidSkene().fit(answers)
    assert np.abs(warm.probas_ - cold.probas_).to_numpy().max() < 1e-3
    assert warm.labels_.equals(cold.labels_)


AT_CHANCE = {f"w{i:02d}": 0.5 for i in range(30)}  # a crowd answering at random


def test_a_flat_likelihood_is_crossed_in_a_fraction_of_plain_em_steps() -> None:
    """Workers at chance leave the likelihood nearly flat: plain EM's posteriors settle
    by a factor of 0.97-0.9999 a step; the accelerated fit reaches the same fixed point
    in a fraction of the steps (each plain step here: a one-step fit from the last)."""
    answers, truth = _crowd(AT_CHANCE, n_tasks=600, per_task=3, seed=0)
    known = truth.iloc[:50]
    model = DawidSkene().fit(answers, known=known)
    plain, steps, shift = DawidSkene(n_iter=1).fit(answers, known=known), 1, np.inf
    while shift > 1e-6:
        step = DawidSkene(n_iter=1).fit(answers, known=known, init=plain)
        shift = np.abs(step.probas_ - plain.probas_).to_numpy().max()
        plain, steps = step, steps + 1
    assert model.converged_
    assert model.n_iter_ < steps / 2
    assert np.abs(model.probas_ - plain.probas_).to_numpy().max() < 1e-4


def test_reaching_the_iteration_cap_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    answers, _ = _crowd(SPARSE, n_tasks=300, n_classes=3, per_task=3)
    with caplog.at_level("WARNING", logger="medloop.aggregation"):
        model = DawidSkene(n_iter=3).fit(answers)
    assert not model.converged_ and model.n_iter_ == 3
    assert "DawidSkene stopped at n_iter=3 before converging" in caplog.text


def test_known_labels_anchor_worker_skill() -> None:
    # worker a is always right, worker b always wrong: the answers alone are symmetric
    truth = np.array([0, 1] * 10)
    answers = pd.DataFrame(
        {
            "task": np.tile(np.arange(20), 2),
            "worker": ["a"] * 20 + ["b"] * 20,
            "label": np.concatenate([truth, 1 - truth]),
        }
    )
    free = DawidSkene().fit(answers)
    assert np.allclose(free.probas_.to_numpy(), 0.5)  # nothing tells a from b

    known = pd.Series({0: 0, 1: 1, 2: 0})
    anchored = DawidSkene().fit(answers, known=known)
    assert anchored.labels_.tolist() == truth.tolist()
    unknown = anchored.probas_.drop(index=known.index).to_numpy()
    assert (unknown.max(axis=1) > 0.9).all()
    assert anchored.probas_.loc[0].tolist() == [1.0, 0.0]
    assert anchored.worker_accuracy_["a"] > 0.8 > 0.2 > anchored.worker_accuracy_["b"]


def test_known_tasks_come_out_exactly_even_against_the_crowd() -> None:
    answers, _ = _crowd({"a": 0.8, "b": 0.8, "c": 0.8}, n_tasks=50, seed=4)
    unanimous = answers.groupby("task")["label"].nunique() == 1
    task = int(unanimous[unanimous].index[0])
    crowd_label = int(answers.loc[answers.task == task, "label"].iloc[0])
    known = pd.Series({task: 1 - crowd_label, 1000: 1})
    model = DawidSkene().fit(answers, known=known)
    assert model.labels_[task] == 1 - crowd_label
    assert model.probas_.loc[task, 1 - crowd_label] == 1.0
    assert model.labels_[1000] == 1  # known task without answers still appears
    assert len(model.labels_) == 51


def test_zero_weight_answers_are_ignored() -> None:
    answers, _ = _crowd({"a": 0.9, "b": 0.7, "c": 0.6}, n_tasks=80, seed=5)
    noise = answers.assign(worker="noise", label=1 - answers["label"], weight=0.0)
    weighted = pd.concat([answers.assign(weight=1.0), noise], ignore_index=True)
    plain = DawidSkene().fit(answers)
    with_noise = DawidSkene().fit(weighted)
    pd.testing.assert_frame_equal(plain.probas_, with_noise.probas_, atol=1e-9)


def test_prior_zero_handles_sparse_workers() -> None:
    answers, truth = _crowd({f"w{i}": 0.75 for i in range(40)}, n_tasks=60, per_task=3, seed=6)
    model = DawidSkene(prior=0.0).fit(answers)
    assert not model.probas_.isna().any().any()
    assert np.isfinite(model.log_likelihood_).all()
    assert _accuracy(model.labels_, truth) > 0.7


def test_parameter_validation() -> None:
    answers, _ = _crowd({"a": 0.9}, n_tasks=5)
    with pytest.raises(InvalidInputError, match="n_iter"):
        DawidSkene(n_iter=0).fit(answers)
    with pytest.raises(InvalidInputError, match="prior"):
        DawidSkene(prior=-1.0).fit(answers)
    with pytest.raises(InvalidInputError, match="tol"):
        DawidSkene(tol=float("nan")).fit(answers)
    with pytest.raises(UnknownOptionError, match="majority_vote"):
        DawidSkene(initial="majority").fit(answers)


def test_repr_shows_parameters() -> None:
    assert repr(DawidSkene(n_iter=5)) == (
        "DawidSkene(classes=None, n_iter=5, tol=1e-06, prior=1.0, initial='majority_vote', "
        "diagonal_prior=1.0)"
    )


def test_hundred_thousand_answers() -> None:
    rng = np.random.default_rng(7)
    workers = {f"w{i:03d}": float(a) for i, a in enumerate(rng.uniform(0.45, 0.95, 200))}
    for i in range(40):  # spammers
        workers[f"s{i:03d}"] = 0.25
    answers, truth = _crowd(workers, n_tasks=20_000, n_classes=4, per_task=5, seed=7)
    assert len(answers) == 100_000
    mv = _accuracy(MajorityVote().fit_predict(answers), truth)
    model = DawidSkene().fit(answers)
    ds = _accuracy(model.labels_, truth)
    assert ds > mv + 0.03
    true_acc = pd.Series(workers)
    corr = np.corrcoef(true_acc.loc[model.workers_], model.worker_accuracy_)[0, 1]
    assert corr > 0.95


def test_real_data_zheng_product(crowd_dir: Path) -> None:
    folder = crowd_dir / "zheng_D_Product"
    answers = pd.read_csv(folder / "answers.csv")
    gold = pd.read_csv(folder / "gold.csv").set_index("task")["label"]  # scoring only
    ds = _accuracy(DawidSkene().fit_predict(answers), gold)
    mv = _accuracy(MajorityVote().fit_predict(answers), gold)
    assert ds >= 0.93  # crowd-kit reports 0.940
    assert mv == pytest.approx(0.897, abs=0.005)
