"""Is there evidence that a treatment's effect differs between patients?

`heterogeneity_test` is the best-linear-predictor (BLP) test of Chernozhukov, Demirer,
Duflo & Fernandez-Val ("Generic machine learning inference on heterogeneous treatment
effects in randomized experiments", 2018). Each patient's effect is predicted by a model
fitted without them (cross-fitting over folds), and the doubly robust pseudo-outcome

    psi = mu1 - mu0 + T (Y - mu1) / e - (1 - T) (Y - mu0) / (1 - e)

(mu the fold's outcome models, e the treated share of a randomised trial) is regressed on
1 and the centred prediction, with heteroskedasticity-robust errors. Its intercept
estimates the average effect; its slope is 1 where the predicted differences between
patients are right and 0 where they carry no signal. Where the slope is not clearly
above 0 (one-sided p-value), the differences the model draws between patients, and the
features said to drive them, are not evidence: the average effect applies to everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.model_selection import StratifiedKFold

from medloop.exceptions import InvalidInputError
from medloop.precision.effects import TreatmentEffects

#: The p-value below which the slope counts as evidence of differences between patients.
LEVEL = 0.05


@dataclass(frozen=True)
class Heterogeneity:
    """The BLP test's figures: `average_effect` (with its standard error), `slope` (with
    its standard error) and `p_value`, one-sided, of slope <= 0; `n_splits` folds."""

    average_effect: float
    average_effect_se: float
    slope: float
    slope_se: float
    p_value: float
    n_splits: int

    @property
    def evidence(self) -> bool:
        """True where the effect differs between patients at the `LEVEL`."""
        return self.p_value < LEVEL

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "evidence": self.evidence}


def heterogeneity_test(
    model: TreatmentEffects,
    X: pd.DataFrame,
    treatment: Any,
    outcome: Any,
    *,
    sample_weight: Any = None,
    n_splits: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Heterogeneity:
    """The BLP test of `model`'s settings (learner, base; refitted without bootstrap in
    each of `n_splits` folds stratified on arm and outcome) on randomised data;
    `sample_weight` (e.g. censoring weights) weighs both the fits and the regression.
    `progress` is called with (folds done, n_splits) after each fold."""
    t = np.asarray(treatment).astype(int)
    y = np.asarray(outcome, dtype=float)
    w = np.ones(len(t)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if not len(X) == len(t) == len(y) == len(w):
        raise InvalidInputError("X, treatment, outcome and weights need the same length")
    binary = np.isin(y, (0.0, 1.0)).all()
    strata = 2 * t + (y if binary else y > np.median(y)).astype(int)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    psi, predicted = np.empty(len(t)), np.empty(len(t))
    for done, (train, test) in enumerate(folds.split(X, strata), start=1):
        fitted = TreatmentEffects(model.learner, model.base, n_bootstrap=0, seed=seed).fit(
            X.iloc[train], t[train], y[train], sample_weight=w[train]
        )
        arms = fitted.potential_outcomes(X.iloc[test])
        mu0, mu1 = arms["control"].to_numpy(), arms["treated"].to_numpy()
        share = float(np.average(t[train], weights=w[train]))
        treated = t[test] == 1
        residual = np.where(treated, (y[test] - mu1) / share, -(y[test] - mu0) / (1 - share))
        psi[test] = mu1 - mu0 + residual
        predicted[test] = fitted.effect(X.iloc[test]).to_numpy()
        if progress is not None:
            progress(done, n_splits)
    centred = predicted - np.average(predicted, weights=w)
    (average, slope), (average_se, slope_se) = _weighted_ols(centred, psi, w)
    if slope_se == 0 or not np.isfinite(slope_se):  # one prediction for everyone
        p_value = 1.0
    else:
        p_value = float(norm.sf(slope / slope_se))
    return Heterogeneity(average, average_se, slope, slope_se, p_value, n_splits)


def _weighted_ols(
    x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((intercept, slope), their HC1 robust standard errors) of y on 1 and x, weights w;
    the slope's error is infinite where x does not vary."""
    if np.ptp(x) == 0:
        intercept = float(np.average(y, weights=w))
        residual = y - intercept
        n = len(y)
        error = float(np.sqrt(np.sum((w * residual) ** 2) / np.sum(w) ** 2 * n / (n - 1)))
        return (intercept, 0.0), (error, np.inf)
    Z = np.column_stack([np.ones(len(x)), x])
    bread = np.linalg.inv(Z.T @ (w[:, None] * Z))
    beta = bread @ Z.T @ (w * y)
    residual = y - Z @ beta
    meat = (Z * (w * residual)[:, None]).T @ (Z * (w * residual)[:, None])
    n = len(y)
    se = np.sqrt(np.diag(bread @ meat @ bread * n / (n - 2)))
    return (float(beta[0]), float(beta[1])), (float(se[0]), float(se[1]))
