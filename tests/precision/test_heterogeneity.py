"""The best-linear-predictor test finds a planted difference in effect, and none where
the effect is the same for everyone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medloop.precision import TreatmentEffects
from medloop.precision.heterogeneity import heterogeneity_test


def trial(n: int, slope: float, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A randomised trial whose effect on P(outcome) is 0.1 + slope * x."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.uniform(-1, 1, n), "noise": rng.normal(size=n)})
    t = rng.integers(0, 2, n)
    p = 0.45 + t * (0.1 + slope * X["x"].to_numpy())
    return X, t, (rng.random(n) < p).astype(float)


def test_a_planted_difference_is_found() -> None:
    X, t, y = trial(1500, 0.3, seed=0)
    test = heterogeneity_test(TreatmentEffects("t", "linear"), X, t, y)
    assert test.evidence and test.p_value < 0.01
    assert 0.5 < test.slope < 1.5  # a linear model of a linear effect: about 1
    assert abs(test.average_effect - 0.1) < 2.5 * test.average_effect_se


def test_a_constant_effect_shows_no_difference() -> None:
    p_values = []
    for seed in range(3):
        X, t, y = trial(800, 0.0, seed=seed)
        test = heterogeneity_test(TreatmentEffects("t", "gbm"), X, t, y, seed=seed)
        p_values.append(test.p_value)
        assert abs(test.average_effect - 0.1) < 3 * test.average_effect_se
    assert min(p_values) > 0.05, p_values


def test_censoring_weights_weigh_the_regression() -> None:
    X, t, y = trial(600, 0.3, seed=1)
    weight = np.where(y == 1, 2.0, 1.0)
    plain = heterogeneity_test(TreatmentEffects("t", "linear"), X, t, y)
    weighted = heterogeneity_test(TreatmentEffects("t", "linear"), X, t, y, sample_weight=weight)
    assert weighted.average_effect != plain.average_effect
