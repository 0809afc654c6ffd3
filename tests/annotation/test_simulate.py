"""Simulated lay annotators and doctors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import DawidSkene, MajorityVote
from medloop.annotation import SimulatedCrowd, SimulatedDoctor
from medloop.exceptions import InvalidInputError


def _truth(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.arange(1000, 1000 + n), rng.integers(0, k, n)


def _correct(answers: pd.DataFrame, items: np.ndarray, truth: np.ndarray) -> pd.Series:
    lookup = pd.Series(truth, index=items)
    return answers["label"].to_numpy() == lookup.loc[answers["task"]].to_numpy()


def test_big_crowd_accuracy_matches_mean() -> None:
    crowd = SimulatedCrowd(300, n_classes=3, accuracy_mean=0.7, seed=1)
    assert crowd.accuracy_.mean() == pytest.approx(0.7, abs=0.02)
    items, truth = _truth(4000, 3)
    answers = crowd.answer(items, truth, redundancy=5)
    assert _correct(answers, items, truth).mean() == pytest.approx(0.7, abs=0.02)
    # each worker's empirical accuracy follows its drawn accuracy
    per_worker = answers.assign(ok=_correct(answers, items, truth)).groupby("worker")["ok"].mean()
    corr = np.corrcoef(per_worker, crowd.accuracy_.loc[per_worker.index])[0, 1]
    assert corr > 0.7


def test_confusion_matrices() -> None:
    crowd = SimulatedCrowd(50, n_classes=4, accuracy_mean=0.6, seed=2)
    conf = crowd.confusion_
    assert conf.shape == (50, 4, 4)
    assert np.allclose(conf.sum(axis=2), 1.0)
    diag = conf[:, np.arange(4), np.arange(4)]
    assert np.allclose(diag, crowd.accuracy_.to_numpy()[:, None])
    assert (crowd.accuracy_ >= 0.25).all() and (crowd.accuracy_ <= 0.99).all()
    # errors are class-dependent: off-diagonal mass is not spread evenly
    off = conf[:, ~np.eye(4, dtype=bool)].reshape(50, 4, 3)
    assert (off.max(axis=2) - off.min(axis=2)).mean() > 0.05
    assert crowd.worker_ids_[:2] == ["lay-001", "lay-002"]
    assert list(crowd.accuracy_.index) == crowd.worker_ids_


def test_spammers_answer_uniformly() -> None:
    crowd = SimulatedCrowd(40, n_classes=2, spammer_fraction=0.25, seed=3)
    assert int(crowd.is_spammer_.sum()) == 10
    spammers = crowd.is_spammer_[crowd.is_spammer_].index
    assert np.allclose(crowd.accuracy_[spammers], 0.5)
    items, truth = _truth(6000, 2)
    answers = crowd.answer(items, truth, redundancy=4)
    ok = pd.Series(_correct(answers, items, truth))
    from_spammers = answers["worker"].isin(spammers).to_numpy()
    assert ok[from_spammers].mean() == pytest.approx(0.5, abs=0.03)
    assert ok[~from_spammers].mean() > 0.65


def test_answers_shape_and_distinct_workers() -> None:
    crowd = SimulatedCrowd(6, n_classes=2, seed=4)
    items, truth = _truth(200, 2)
    answers = crowd.answer(items, truth, redundancy=4)
    assert list(answers.columns) == ["task", "worker", "label", "source"]
    assert len(answers) == 800
    assert (answers["source"] == "crowd").all()
    per_item = answers.groupby("task")["worker"].agg(["size", "nunique"])
    assert (per_item["size"] == 4).all() and (per_item["nunique"] == 4).all()
    assert set(answers["task"]) == set(items.tolist())
    assert set(answers["label"]) <= {0, 1}
    # every worker gets used, roughly evenly
    counts = answers["worker"].value_counts()
    assert len(counts) == 6 and counts.min() > 100
    # redundancy equal to the crowd size: everyone answers everything
    full = crowd.answer(items[:10], truth[:10], redundancy=6)
    assert (full.groupby("task")["worker"].nunique() == 6).all()


def test_nobody_answers_an_item_twice() -> None:
    """Workers who answered an item before are left out; when too few are left the item
    gets fewer answers; without `answered_by` nothing changes."""
    crowd = SimulatedCrowd(6, n_classes=2, seed=4)
    items, truth = _truth(300, 2)
    first = crowd.answer(items, truth, redundancy=3)
    seen = first.groupby("task")["worker"].agg(set)
    again = crowd.answer(items, truth, redundancy=3, answered_by=[seen[i] for i in items.tolist()])
    pairs = set(zip(first["task"], first["worker"], strict=True))
    assert not pairs & set(zip(again["task"], again["worker"], strict=True))
    assert (again.groupby("task").size() == 3).all()
    crowded = crowd.answer(
        items[:2], truth[:2], redundancy=3, answered_by=[crowd.worker_ids_[:5], []]
    )
    assert crowded.groupby("task").size().to_dict() == {items[0]: 1, items[1]: 3}
    assert crowded["worker"].iloc[0] == crowd.worker_ids_[5]
    with pytest.raises(InvalidInputError, match="one entry per item"):
        crowd.answer(items[:2], truth[:2], answered_by=[[]])
    plain = SimulatedCrowd(6, n_classes=2, seed=9), SimulatedCrowd(6, n_classes=2, seed=9)
    pd.testing.assert_frame_equal(
        plain[0].answer(items, truth), plain[1].answer(items, truth, answered_by=[[]] * 300)
    )


def test_deterministic_under_seed_and_stream_continues() -> None:
    items, truth = _truth(100, 3)
    first = SimulatedCrowd(10, n_classes=3, seed=5)
    second = SimulatedCrowd(10, n_classes=3, seed=5)
    a1, a2 = first.answer(items, truth), first.answer(items, truth)
    b1, b2 = second.answer(items, truth), second.answer(items, truth)
    pd.testing.assert_frame_equal(a1, b1)
    pd.testing.assert_frame_equal(a2, b2)
    assert not a1.equals(a2)  # the stream moves on between calls
    other = SimulatedCrowd(10, n_classes=3, seed=6)
    assert not np.allclose(other.accuracy_.to_numpy(), first.accuracy_.to_numpy())


def test_crowd_validation() -> None:
    with pytest.raises(InvalidInputError, match="n_classes"):
        SimulatedCrowd(5, n_classes=1)
    with pytest.raises(InvalidInputError, match="accuracy_mean"):
        SimulatedCrowd(5, n_classes=2, accuracy_mean=1.0)
    crowd = SimulatedCrowd(5, n_classes=2)
    with pytest.raises(InvalidInputError, match="redundancy"):
        crowd.answer([1, 2], [0, 1], redundancy=6)
    with pytest.raises(InvalidInputError, match=r"0\.\.1"):
        crowd.answer([1, 2], [0, 2])
    with pytest.raises(InvalidInputError, match="equal length"):
        crowd.answer([1, 2, 3], [0, 1])


def test_doctor_budget_and_order() -> None:
    doctor = SimulatedDoctor(n_classes=2, accuracy=1.0, budget=3)
    answers = doctor.answer([9, 4, 7, 1, 2], [1, 0, 1, 1, 0])
    assert answers["task"].tolist() == [9, 4, 7]
    assert answers["label"].tolist() == [1, 0, 1]
    assert (answers["worker"] == "doctor-1").all()
    assert (answers["source"] == "doctor").all()
    assert len(doctor.answer([1, 2], [0, 0])) == 2
    assert len(SimulatedDoctor(n_classes=2, budget=0).answer([1], [0])) == 0


def test_doctor_accuracy_and_determinism() -> None:
    items, truth = _truth(5000, 4)
    doctor = SimulatedDoctor("dr-house", n_classes=4, accuracy=0.9, budget=5000, seed=7)
    answers = doctor.answer(items, truth)
    assert _correct(answers, items, truth).mean() == pytest.approx(0.9, abs=0.015)
    assert set(answers["label"]) == {0, 1, 2, 3}
    again = SimulatedDoctor("dr-house", n_classes=4, accuracy=0.9, budget=5000, seed=7)
    pd.testing.assert_frame_equal(answers, again.answer(items, truth))


def test_simulated_answers_feed_aggregators() -> None:
    crowd = SimulatedCrowd(25, n_classes=2, accuracy_mean=0.75, spammer_fraction=0.4, seed=8)
    items, truth = _truth(1500, 2, seed=8)
    answers = crowd.answer(items, truth, redundancy=5)
    reference = pd.Series(truth, index=items)
    mv = (MajorityVote().fit_predict(answers) == reference).mean()
    ds_model = DawidSkene().fit(answers)
    ds = (ds_model.labels_ == reference).mean()
    assert ds > mv
    corr = np.corrcoef(crowd.accuracy_, ds_model.worker_accuracy_.loc[crowd.worker_ids_])[0, 1]
    assert corr > 0.9
