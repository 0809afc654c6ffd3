"""The O(n log n) Cox loss equals scikit-survival's quadratic one; the model fits the same."""

from __future__ import annotations

import numpy as np
from sksurv.ensemble import GradientBoostingSurvivalAnalysis
from sksurv.ensemble._coxph_loss import coxph_loss, coxph_negative_gradient

from medloop.precision import survival_target
from medloop.precision.boosting import CoxBoost, coxph_gradient, coxph_partial_loss


def tied(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times on a coarse grid (many ties, events and censoring at the same time)."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 30, n).astype(float)
    event = rng.random(n) < 0.4
    return time, event, rng.normal(size=n)


def test_loss_and_gradient_equal_scikit_survival_with_ties() -> None:
    for seed in range(3):
        time, event, risk = tied(400, seed)
        y = survival_target(time, event)
        reference = coxph_negative_gradient(event.astype(np.uint8), time, risk)
        np.testing.assert_allclose(coxph_gradient(y, risk), reference, rtol=1e-10, atol=1e-12)
        loss = coxph_loss(event.astype(np.uint8), time, risk)
        assert coxph_partial_loss(y, risk) == np.float64(loss) or np.isclose(
            coxph_partial_loss(y, risk), loss, rtol=1e-12
        )


def test_cox_boost_fits_what_scikit_survival_fits() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    # distinct times: with ties, patients with equal gradients differ by rounding (1e-15)
    # and a tree may break their tie the other way; the loss itself is checked with ties
    y = survival_target(rng.exponential(np.exp(-X[:, 0])), rng.random(300) < 0.7)
    settings = {"n_estimators": 50, "max_depth": 2, "subsample": 0.8, "random_state": 0}
    ours = CoxBoost(**settings).fit(X, y)
    theirs = GradientBoostingSurvivalAnalysis(**settings).fit(X, y)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.train_score_, theirs.train_score_, rtol=1e-9)
