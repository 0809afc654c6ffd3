"""Bootstrap refits run in worker processes give the same intervals as run one by one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError
from medloop.precision import (
    RiskClassifier,
    TreatmentEffects,
    bootstrap_band,
    bootstrap_risk_interval,
    survival_target,
)
from medloop.precision.intervals import run_refits


def _square(x: int) -> int:
    return x * x


def test_refits_come_back_in_order_with_progress() -> None:
    for n_jobs in (1, 2):
        done: list[int] = []
        assert run_refits(
            _square, ((i,) for i in range(6)), n_jobs=n_jobs, progress=done.append
        ) == [
            0,
            1,
            4,
            9,
            16,
            25,
        ]
        assert done == [1, 2, 3, 4, 5, 6]
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InvalidInputError, match="n_jobs"):
            run_refits(_square, [(1,)], n_jobs=bad)  # type: ignore[arg-type]


def test_a_survival_band_does_not_depend_on_the_workers() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(150, 2)), columns=["risk", "noise"])
    time = rng.exponential(scale=np.exp(-X["risk"].to_numpy()))
    censor = rng.exponential(scale=2.0, size=150)
    y = survival_target(np.minimum(time, censor), time <= censor)
    times = np.quantile(y["time"], [0.25, 0.5])
    one, two = (
        bootstrap_band(X, y, X.head(5), times, method="cox", n_bootstrap=39, seed=3, n_jobs=n)
        for n in (1, 2)
    )
    for a, b in zip(one, two, strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_risk_intervals_and_treatment_effects_do_not_depend_on_the_workers() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"marker": rng.normal(size=300), "age": rng.normal(size=300)})
    y = rng.binomial(1, 1 / (1 + np.exp(-1.5 * X["marker"]))).astype(int)
    intervals = [
        bootstrap_risk_interval(RiskClassifier("logistic"), X, y, X.head(5), seed=2, n_jobs=n)
        for n in (1, 2)
    ]
    pd.testing.assert_frame_equal(*intervals)
    t = rng.integers(0, 2, 300)
    outcome = X["age"].to_numpy() + 2 * X["marker"].to_numpy() * t + rng.normal(size=300)
    effects = [
        TreatmentEffects("t", "gbm", n_bootstrap=39, seed=4, n_jobs=n).fit(X, t, outcome)
        for n in (1, 2)
    ]
    pd.testing.assert_frame_equal(effects[0].estimate(X.head(5)), effects[1].estimate(X.head(5)))
