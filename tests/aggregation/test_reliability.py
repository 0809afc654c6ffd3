"""Per-worker reliability from gold answers and from a model's posteriors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.aggregation import DawidSkene
from medloop.aggregation.reliability import worker_reliability
from medloop.exceptions import InvalidInputError


def _crowd(seed: int = 0) -> tuple[pd.DataFrame, pd.Series, dict[str, float]]:
    rng = np.random.default_rng(seed)
    skills = {"expert": 0.95, "good": 0.85, "fair": 0.7, "poor": 0.55}
    n_tasks = 500
    truth = rng.integers(0, 2, n_tasks)
    rows = []
    for worker, skill in skills.items():
        right = rng.random(n_tasks) < skill
        rows.append(
            pd.DataFrame(
                {
                    "task": np.arange(n_tasks),
                    "worker": worker,
                    "label": np.where(right, truth, 1 - truth),
                }
            )
        )
    return pd.concat(rows, ignore_index=True), pd.Series(truth), skills


def test_gold_and_model_reliability_cover_true_skill() -> None:
    answers, truth, skills = _crowd(3)
    gold = truth.iloc[:200]
    model = DawidSkene().fit(answers)
    table = worker_reliability(answers, known=gold, model=model)
    assert table["n_gold"].eq(200).all()
    assert table["n_answers"].eq(500).all()
    for worker, skill in skills.items():
        row = table.loc[worker]
        assert row["gold_low"] <= skill <= row["gold_high"]
        assert row["gold_high"] - row["gold_low"] < 0.2
        assert row["model_accuracy"] == pytest.approx(skill, abs=0.05)
        assert row["model_low"] < row["model_accuracy"] < row["model_high"]


def test_workers_without_gold_get_the_whole_interval() -> None:
    answers, _, _ = _crowd()
    table = worker_reliability(answers, known=pd.Series({10_000: 0}))
    assert table["n_gold"].eq(0).all()
    assert table["gold_accuracy"].isna().all()
    assert table["gold_low"].eq(0).all() and table["gold_high"].eq(1).all()
    assert "model_accuracy" not in table


def test_model_must_cover_the_answers() -> None:
    answers, _, _ = _crowd()
    model = DawidSkene().fit(answers[answers["task"] < 100])
    with pytest.raises(InvalidInputError, match="not fitted"):
        worker_reliability(answers, model=model)


def test_gold_on_a_task_nobody_answered_is_not_a_foreign_model() -> None:
    answers, truth, _ = _crowd(3)
    model = DawidSkene().fit(answers)
    gold = pd.concat([truth.iloc[:50], pd.Series({10_000: 1})])  # one task not yet answered
    table = worker_reliability(answers, known=gold, model=model)
    assert table["n_gold"].eq(50).all() and table["model_accuracy"].notna().all()


def _sparse_crowd(seed: int) -> tuple[pd.DataFrame, pd.Series]:
    """600 tasks, 3 answers each from 30 workers of known accuracy 0.55-0.9."""
    rng = np.random.default_rng(seed)
    skill = pd.Series(rng.uniform(0.55, 0.9, 30))
    truth = rng.integers(0, 2, 600)
    task = np.repeat(np.arange(600), 3)
    worker = np.concatenate([rng.choice(30, 3, replace=False) for _ in range(600)])
    right = rng.random(len(task)) < skill.to_numpy()[worker]
    label = np.where(right, truth[task], 1 - truth[task])
    return pd.DataFrame({"task": task, "worker": worker, "label": label}), skill


def test_model_interval_covers_the_true_accuracy() -> None:
    """A Wilson interval on posterior-weighted counts covered ~80% of these workers;
    the task bootstrap covers ~95% (checked at >= 0.88 over 120 workers)."""
    hits = total = 0
    for seed in range(4):
        answers, skill = _sparse_crowd(seed)
        table = worker_reliability(answers, model=DawidSkene().fit(answers))
        true = skill.loc[table.index]
        hits += int(((table["model_low"] <= true) & (true <= table["model_high"])).sum())
        total += len(table)
    assert total == 120
    assert hits / total >= 0.88


def test_model_interval_is_seeded_and_honours_known_labels() -> None:
    answers, truth, _ = _crowd(3)
    gold = truth.iloc[:100]
    model = DawidSkene().fit(answers, known=gold)
    first = worker_reliability(answers, known=gold, model=model, n_bootstrap=20)
    again = worker_reliability(answers, known=gold, model=model, n_bootstrap=20)
    pd.testing.assert_frame_equal(first, again)
    other = worker_reliability(answers, known=gold, model=model, n_bootstrap=20, seed=1)
    assert not other["model_low"].equals(first["model_low"])
    assert (first["model_low"] <= first["model_accuracy"]).all()
    assert (first["model_accuracy"] <= first["model_high"]).all()
    with pytest.raises(InvalidInputError, match="n_bootstrap"):
        worker_reliability(answers, model=model, n_bootstrap=0)


def test_bootstrap_refits_converge_on_a_crowd_answering_at_random(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worst case for EM (as benchmarks/review_read.py's crowd): every answer a coin
    flip, the likelihood nearly flat. Plain EM's refits ran into n_iter=1000 here."""
    rng = np.random.default_rng(1)
    task = np.repeat(np.arange(1000), 3)
    worker = np.concatenate([rng.choice(30, 3, replace=False) for _ in range(1000)])
    answers = pd.DataFrame({"task": task, "worker": worker, "label": rng.integers(0, 2, 3000)})
    known = pd.Series(np.arange(50) % 2)
    model = DawidSkene().fit(answers, known=known)
    with caplog.at_level("WARNING", logger="medloop.aggregation"):
        table = worker_reliability(answers, known=known, model=model)
    assert "before converging" not in caplog.text
    assert (table["model_low"] <= table["model_high"]).all()
