"""Off-policy evaluation of treatment recommendations, and the trial's hazard ratio.

`ipw_policy_value` is the inverse-propensity weighted (Horvitz-Thompson) value of a
treatment policy; `cross_fitted_policy_value` learns the policy on K-1 folds and scores
it on the held-out fold, so no patient's outcome helps choose their own treatment.
`cox_hazard_ratio` fits a one-covariate Cox model (Breslow ties) by Newton-Raphson.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.model_selection import StratifiedKFold

from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)

#: Learns a policy on training rows: (X, treatment, outcome) -> function X -> 0/1 array.
PolicyLearner = Callable[[pd.DataFrame, np.ndarray, np.ndarray], Callable[[pd.DataFrame], Any]]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its standard error and (1 - alpha) confidence interval."""

    value: float
    se: float
    lower: float
    upper: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{'_' + k if k != 'value' else ''}": v for k, v in asdict(self).items()}


def _interval(value: float, se: float, alpha: float) -> Estimate:
    z = float(stats.norm.ppf(1 - alpha / 2))
    return Estimate(value=value, se=se, lower=value - z * se, upper=value + z * se)


def _check(outcome: np.ndarray, treatment: np.ndarray, *others: np.ndarray) -> None:
    n = len(outcome)
    if any(len(a) != n for a in (treatment, *others)):
        raise InvalidInputError("outcome, treatment, policy and propensity need equal lengths")
    if not np.isin(treatment, (0, 1)).all():
        raise InvalidInputError("treatment must be 0/1")
    if not np.isfinite(outcome).all():
        raise InvalidInputError("outcomes must be finite numbers (no missing values)")


def _decisions(policy: np.ndarray, what: str = "policy") -> np.ndarray:
    """A policy's decisions as 0/1 ints; anything else (a probability 0.9, a 2) is refused,
    since casting would read 0.9 as "do not treat"."""
    values = np.asarray(policy, float)
    if not np.isin(values, (0.0, 1.0)).all():
        raise InvalidInputError(
            f"the {what} must decide 0 (do not treat) or 1 (treat) for each patient"
        )
    return values.astype(int)


def ipw_terms(
    outcome: np.ndarray, treatment: np.ndarray, policy: np.ndarray, propensity: np.ndarray
) -> np.ndarray:
    """Per-patient IPW contributions: 1[T = pi(X)] * Y / P(T | X)."""
    outcome, treatment = np.asarray(outcome, float), np.asarray(treatment)
    policy, propensity = _decisions(policy), np.asarray(propensity, float)
    _check(outcome, treatment, policy, propensity)
    treatment = treatment.astype(int)
    if ((propensity <= 0) | (propensity >= 1)).any():
        raise InvalidInputError("propensities must lie strictly between 0 and 1")
    p_received = np.where(treatment == 1, propensity, 1 - propensity)
    return np.asarray((treatment == policy) * outcome / p_received, dtype=float)


def ipw_policy_value(
    outcome: np.ndarray,
    treatment: np.ndarray,
    policy: np.ndarray,
    propensity: np.ndarray,
    *,
    alpha: float = 0.05,
) -> Estimate:
    """The IPW estimate of E[Y] had everyone been treated as `policy` says, with a CI."""
    terms = ipw_terms(outcome, treatment, policy, propensity)
    return _interval(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms))), alpha)


@dataclass(frozen=True)
class PolicyReport:
    """Held-out values of the learned policy and of the fixed policies, with CIs."""

    policy: Estimate
    treat_all: Estimate
    treat_none: Estimate
    gain_over_treat_all: Estimate
    share_treated: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        out: dict[str, float] = {}
        for name in ("policy", "treat_all", "treat_none", "gain_over_treat_all"):
            out.update(getattr(self, name).as_dict(f"{prefix}{name}_value"))
        out[f"{prefix}share_treated"] = self.share_treated
        return out


def cross_fitted_policy_value(
    X: pd.DataFrame,
    treatment: np.ndarray,
    outcome: np.ndarray,
    *,
    learner: PolicyLearner,
    propensity: np.ndarray | float | None = None,
    n_splits: int = 5,
    seed: int = 0,
    alpha: float = 0.05,
) -> PolicyReport:
    """Cross-fitted IPW value of the policy `learner` produces, vs treat-all/treat-none.

    Each fold's policy is learned without that fold. `propensity` defaults to the
    treated share of the other folds (a randomised trial); pass the known assignment
    probability, or per-patient propensities, where they are known.
    """
    treatment = np.asarray(treatment, int)
    outcome = np.asarray(outcome, float)
    if len(X) != len(treatment) or len(X) != len(outcome):
        raise InvalidInputError("X, treatment and outcome need the same number of rows")
    policy = np.zeros(len(X), dtype=int)
    prop = np.empty(len(X), dtype=float)
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(folds.split(X, treatment * 2 + (outcome > 0))):
        rule = learner(X.iloc[train], treatment[train], outcome[train])
        policy[test] = _decisions(rule(X.iloc[test]), "learned rule")
        if propensity is None:
            prop[test] = treatment[train].mean()
        elif np.isscalar(propensity):
            prop[test] = float(propensity)  # type: ignore[arg-type]
        else:
            prop[test] = np.asarray(propensity, float)[test]
        logger.info("fold %d: policy treats %.1f%%", k, 100 * policy[test].mean())
    ones, zeros = np.ones_like(policy), np.zeros_like(policy)
    learned = ipw_terms(outcome, treatment, policy, prop)
    everyone = ipw_terms(outcome, treatment, ones, prop)
    gain = learned - everyone
    n = len(gain)
    return PolicyReport(
        policy=_interval(float(learned.mean()), float(learned.std(ddof=1) / np.sqrt(n)), alpha),
        treat_all=_interval(
            float(everyone.mean()), float(everyone.std(ddof=1) / np.sqrt(n)), alpha
        ),
        treat_none=ipw_policy_value(outcome, treatment, zeros, prop, alpha=alpha),
        gain_over_treat_all=_interval(
            float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(n)), alpha
        ),
        share_treated=float(policy.mean()),
    )


@dataclass(frozen=True)
class HazardRatio:
    """exp(beta) of a one-covariate Cox model with its Wald confidence interval."""

    hr: float
    lower: float
    upper: float
    coef: float
    se: float


#: |log hazard ratio| beyond which the fit has run off (a hazard ratio past e^20).
MAX_LOG_HR = 20.0


def cox_hazard_ratio(
    time: np.ndarray,
    event: np.ndarray,
    covariate: np.ndarray,
    *,
    alpha: float = 0.05,
    max_iter: int = 50,
) -> HazardRatio:
    """Hazard ratio of a single covariate (e.g. treatment 0/1), Breslow ties.

    >>> t, e = np.array([1.0, 2, 3, 4]), np.array([1, 1, 1, 1])
    >>> cox_hazard_ratio(t, e, np.array([1, 0, 1, 0])).hr > 1
    True
    """
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    x = np.asarray(covariate, float)
    if not (len(time) == len(event) == len(x)):
        raise InvalidInputError("time, event and covariate need equal lengths")
    if not (np.isfinite(time).all() and np.isfinite(x).all()):
        raise InvalidInputError("times and the covariate must be finite numbers")
    if not event.any():
        raise InvalidInputError("no events: the hazard ratio is undefined")
    order = np.argsort(-time, kind="stable")  # descending time: risk sets are prefixes
    t, d, x = time[order], event[order], x[order]
    beta = 0.0
    info = 1.0
    for _ in range(max_iter):
        w = np.exp(beta * x)
        s0, s1, s2 = np.cumsum(w), np.cumsum(w * x), np.cumsum(w * x * x)
        # for ties the risk set at time t includes every row with time >= t: use the last
        # index of each tied block in the descending order
        last = np.searchsorted(-t, -t, side="right") - 1
        s0, s1, s2 = s0[last], s1[last], s2[last]
        mean = s1 / s0
        grad = float(np.sum(d * (x - mean)))
        info = float(np.sum(d * (s2 / s0 - mean**2)))
        if info <= 0 and beta == 0.0:
            raise InvalidInputError("the covariate does not vary among patients at risk")
        if info <= 0 or not np.isfinite(beta):
            break  # separation: the estimate runs off to infinity
        step = grad / info
        beta += step
        if abs(step) < 1e-10:
            break
    else:
        info = 0.0  # no convergence in max_iter steps
    if not info > 0 or abs(beta) > MAX_LOG_HR:
        raise InvalidInputError(
            "the hazard ratio does not converge: every event falls in one group (complete "
            "separation), so the estimate is infinite"
        )
    se = float(1 / np.sqrt(info))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return HazardRatio(
        hr=float(np.exp(beta)),
        lower=float(np.exp(beta - z * se)),
        upper=float(np.exp(beta + z * se)),
        coef=float(beta),
        se=se,
    )
