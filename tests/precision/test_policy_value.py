"""IPW policy values (known answers), cross-fitting, and the Cox hazard ratio."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis

from medloop.exceptions import InvalidInputError
from medloop.precision import (
    cox_hazard_ratio,
    cross_fitted_policy_value,
    ipw_policy_value,
    survival_target,
    treat_if_benefit,
)


def test_ipw_known_answer() -> None:
    outcome = np.array([1.0, 0.0, 1.0, 1.0])
    treatment = np.array([1, 1, 0, 0])
    policy = np.array([1, 0, 0, 1])
    # matches: rows 0 (treated, p=0.5) and 2 (control, p=0.5): (1/0.5 + 1/0.5) / 4 = 1.0
    est = ipw_policy_value(outcome, treatment, policy, np.full(4, 0.5))
    assert est.value == pytest.approx(1.0)
    assert est.lower < est.value < est.upper
    with pytest.raises(InvalidInputError, match="strictly between"):
        ipw_policy_value(outcome, treatment, policy, np.ones(4))


def test_cross_fitted_policy_beats_treat_all_when_effect_changes_sign() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    X = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    t = rng.integers(0, 2, n)
    y = 1.0 + X["x"].to_numpy() * t + rng.normal(scale=0.3, size=n)  # helps iff x > 0
    report = cross_fitted_policy_value(
        X, t, y, learner=treat_if_benefit("t", "linear"), propensity=0.5, seed=0
    )
    assert report.policy.value > report.treat_all.value + 0.2
    assert report.policy.value > report.treat_none.value + 0.2
    assert report.gain_over_treat_all.lower > 0
    assert 0.4 < report.share_treated < 0.6
    # the truth: E[1 + max(x, 0)] = 1 + 1/sqrt(2 pi) ~ 1.40
    assert report.policy.lower < 1.40 < report.policy.upper


def test_cox_hazard_ratio_matches_scikit_survival() -> None:
    rng = np.random.default_rng(1)
    n = 400
    x = rng.integers(0, 2, n)
    time = rng.exponential(scale=np.where(x == 1, 2.0, 1.0))  # true HR 0.5
    censor = rng.exponential(scale=3.0, size=n)
    event = time <= censor
    observed = np.minimum(time, censor).round(1)  # ties on purpose
    hr = cox_hazard_ratio(observed, event, x)
    reference = CoxPHSurvivalAnalysis(ties="breslow").fit(
        pd.DataFrame({"x": x.astype(float)}), survival_target(observed, event)
    )
    assert hr.coef == pytest.approx(float(reference.coef_[0]), abs=1e-6)
    assert hr.lower < 0.5 < hr.upper
    with pytest.raises(InvalidInputError, match="no events"):
        cox_hazard_ratio(observed, np.zeros(n), x)


def test_actg320_hazard_ratio_matches_the_published_trial() -> None:
    from medloop.precision.benchmark import actg_data

    X, treatment, time, event = actg_data()
    assert X.shape == (1151, 15) and "txgrp" not in X.columns
    hr = cox_hazard_ratio(time, event, treatment)
    assert hr.hr == pytest.approx(0.504, abs=0.002)  # Hammer et al. 1997: 0.50 (0.33-0.76)
    assert 0.33 <= hr.hr <= 0.76
    assert hr.lower == pytest.approx(0.33, abs=0.01)


def test_gbsg2_split_is_the_evaluation_guide_split() -> None:
    from medloop.precision.benchmark import gbsg2_split

    X_train, X_test, y_train, y_test, y = gbsg2_split()
    assert (len(X_train), len(X_test), len(y)) == (514, 172, 686)
    # stratified on the event indicator
    assert abs(y_train["cens"].mean() - y_test["cens"].mean()) < 0.01


def test_policies_are_decisions_and_inputs_are_finite() -> None:
    """A policy given as probabilities was cast to 0 (0.9 read as "do not treat"); NaN
    outcomes gave an all-NaN estimate, NaN times an ordinary-looking hazard ratio."""
    y, t = np.array([1.0, 0.0, 1.0, 0.0]), np.array([1, 0, 1, 0])
    with pytest.raises(InvalidInputError, match=r"decide 0 \(do not treat\) or 1"):
        ipw_policy_value(y, t, np.array([0.9, 0.1, 0.9, 0.1]), np.full(4, 0.5))
    with pytest.raises(InvalidInputError, match="finite"):
        ipw_policy_value(np.array([1.0, np.nan, 1.0, 0.0]), t, t, np.full(4, 0.5))
    with pytest.raises(InvalidInputError, match="finite"):
        cox_hazard_ratio(np.array([1.0, np.nan, 3.0]), np.array([1, 1, 0]), np.array([0, 1, 0]))


def test_complete_separation_is_said_not_a_non_varying_covariate() -> None:
    rng = np.random.default_rng(0)
    exposed = np.r_[np.ones(20), np.zeros(20)]
    with pytest.raises(InvalidInputError, match="complete separation"):
        cox_hazard_ratio(rng.uniform(1, 10, 40), exposed.astype(bool), exposed)
