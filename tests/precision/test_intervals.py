"""A 95% bootstrap interval needs 39 refits: fewer are refused, not mislabelled."""

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
from medloop.precision.intervals import check_refits, min_refits, percentile_interval


def test_the_fewest_refits_follow_from_the_level() -> None:
    assert (min_refits(0.05), min_refits(0.1), min_refits(0.2)) == (39, 19, 9)
    check_refits(39)
    check_refits(0, none_allowed=True)
    for few in (1, 2, 20, 38):
        with pytest.raises(InvalidInputError, match="at least 39 refits"):
            check_refits(few)


def test_the_interval_of_39_refits_is_their_range() -> None:
    draws = np.random.default_rng(0).permutation(np.arange(39.0))[:, None]
    lower, upper = percentile_interval(draws)
    assert (lower[0], upper[0]) == (0.0, 38.0)
    # 79 refits: the 2nd lowest and 2nd highest, (79 + 1) x 0.025 = 2
    lower, upper = percentile_interval(np.arange(79.0)[:, None])
    assert (lower[0], upper[0]) == pytest.approx((1.0, 77.0))


def test_every_bootstrap_interval_refuses_too_few_refits() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=120)})
    y = survival_target(rng.exponential(size=120), rng.random(120) < 0.7)
    with pytest.raises(InvalidInputError, match="at least 39 refits"):
        bootstrap_band(X, y, X.head(2), [0.5], method="cox", n_bootstrap=2)
    outcome = (rng.random(120) < 0.4).astype(int)
    with pytest.raises(InvalidInputError, match="at least 39 refits"):
        bootstrap_risk_interval(RiskClassifier("logistic"), X, outcome, X.head(2), n_bootstrap=20)
    t = rng.integers(0, 2, 120)
    with pytest.raises(InvalidInputError, match="at least 39 refits"):
        TreatmentEffects("t", "linear", n_bootstrap=30).fit(X, t, outcome)
