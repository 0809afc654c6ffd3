"""Per-patient treatment effects from randomised data with meta-learners.

`TreatmentEffects` estimates, for each patient, the benefit of treatment over control
(`outcome` must be "higher is better", e.g. 1 - event) with a T-, S- or X-learner over a
logistic/ridge or gradient-boosting base model, optionally with per-patient weights.
Intervals come from refitting on bootstrap resamples; when an interval covers zero the
recommendation is "no clear benefit". `drivers` explains each estimate by how far it
moves when one feature is set to the cohort's mean. `event_free_by` turns censored
follow-up into the outcome "event-free by a horizon" with inverse probability of
censoring weights, the way to fit these learners on survival data.

>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"x": rng.normal(size=400)})
>>> t = rng.integers(0, 2, 400)
>>> y = X["x"].to_numpy() * t + rng.normal(scale=0.1, size=400)
>>> est = TreatmentEffects(learner="t", base="linear", n_bootstrap=39).fit(X, t, y)
>>> bool(est.estimate(pd.DataFrame({"x": [2.0]}))["benefit"].iloc[0] > 1.5)
True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.nonparametric import CensoringDistributionEstimator

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision.drivers import drivers_frame
from medloop.precision.intervals import check_refits, percentile_interval, run_refits
from medloop.precision.survival import survival_target

logger = logging.getLogger(__name__)

Learner = Literal["t", "s", "x"]
Base = Literal["linear", "gbm"]
LEARNERS: tuple[str, ...] = ("t", "s", "x")
BASES: tuple[str, ...] = ("linear", "gbm")

CLEAR_BENEFIT = "treat: clear benefit"
NO_CLEAR_BENEFIT = "no clear benefit"
CLEAR_HARM = "do not treat: clear harm"
#: Patients per arm a fit needs at least (with weights: with a positive weight).
MIN_PER_ARM = 5


def _option(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise UnknownOptionError(f"unknown {name} {value!r}; choose one of {list(allowed)}")
    return value


def _refit(
    model: TreatmentEffects, X: np.ndarray, t: np.ndarray, y: np.ndarray, w: np.ndarray | None
) -> dict[str, Any]:
    """One bootstrap refit of `model`'s learner (`run_refits` needs a module function)."""
    return model._fit_once(X, t, y, w)


class TreatmentEffects:
    """Meta-learner for the conditional average treatment effect, with bootstrap intervals.

    Parameters: `learner` t/s/x; `base` "linear" (logistic or ridge) or "gbm"
    (gradient boosting, single-threaded); `n_bootstrap` refits for the interval (0: none;
    else at least `intervals.min_refits(alpha)`, 39 for 95%);
    `alpha` for the (1 - alpha) interval; `seed`; `n_jobs` worker processes for the
    refits (`intervals.run_refits`: the fit does not depend on it). `fit` takes an optional
    `sample_weight` (e.g. `event_free_by`'s censoring weights), passed to every base
    model, bootstrap refits and the X-learner's effect models included.
    Learned: `binary_` (outcome is 0/1: effects are risk differences), `feature_names_`,
    `models_` (full-data fit), `boot_models_`, `mean_` (each feature's mean, for drivers).
    """

    def __init__(
        self,
        learner: str = "t",
        base: str = "linear",
        *,
        n_bootstrap: int = 50,
        alpha: float = 0.05,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.learner = learner
        self.base = base
        self.n_bootstrap = n_bootstrap
        self.alpha = alpha
        self.seed = seed
        self.n_jobs = n_jobs

    # --- fitting ---------------------------------------------------------------------

    def fit(
        self,
        X: pd.DataFrame,
        treatment: np.ndarray | pd.Series,
        outcome: np.ndarray | pd.Series,
        *,
        sample_weight: np.ndarray | pd.Series | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TreatmentEffects:
        """Fit the learner, then its `n_bootstrap` refits (each resample keeps its rows'
        `sample_weight`); `progress` is called with (fits done, 1 + n_bootstrap) after
        each."""
        _option(self.learner, LEARNERS, "learner")
        _option(self.base, BASES, "base")
        # 0 (no interval) or enough refits for a (1 - alpha) interval: 39+ for 95%
        check_refits(self.n_bootstrap, self.alpha, none_allowed=True)
        X = _frame(X)
        t = np.asarray(treatment)
        y = np.asarray(outcome, dtype=float)
        if len(t) != len(X) or len(y) != len(X):
            raise InvalidInputError("X, treatment and outcome need the same number of rows")
        if not np.isin(t, (0, 1)).all():
            raise InvalidInputError("treatment must be 0 (control) or 1 (treated)")
        t = t.astype(int)
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if w is not None and (len(w) != len(X) or not np.isfinite(w).all() or (w < 0).any()):
            raise InvalidInputError("sample_weight needs one finite, non-negative weight per row")
        counted = t if w is None else t[w > 0]  # a zero weight leaves the row out
        if min((counted == 0).sum(), (counted == 1).sum()) < MIN_PER_ARM:
            raise InvalidInputError(
                f"need at least {MIN_PER_ARM} treated and {MIN_PER_ARM} control patients"
            )
        if np.isnan(y).any() or X.isna().any().any():
            raise InvalidInputError("X and outcome must not contain missing values")
        self.binary_ = bool(np.isin(y, (0.0, 1.0)).all())
        self.feature_names_ = list(X.columns)
        Xa = X.to_numpy(dtype=float)
        self.models_ = self._fit_once(Xa, t, y, w)
        if progress is not None:
            progress(1, 1 + self.n_bootstrap)
        rng = np.random.default_rng(self.seed)
        idx_t, idx_c = np.flatnonzero(t == 1), np.flatnonzero(t == 0)
        resamples = [  # within arms, so both arms stay present
            np.concatenate([rng.choice(idx_t, len(idx_t)), rng.choice(idx_c, len(idx_c))])
            for _ in range(self.n_bootstrap)
        ]
        self.boot_models_: list[dict[str, Any]] = run_refits(
            _refit,
            (
                (self, Xa[rows], t[rows], y[rows], None if w is None else w[rows])
                for rows in resamples
            ),
            n_jobs=self.n_jobs,
            progress=None
            if progress is None
            else lambda done: progress(1 + done, 1 + self.n_bootstrap),
        )
        tau = self._effect(self.models_, Xa)
        self.mean_ = Xa.mean(axis=0)
        logger.info(
            "fitted %s-learner (%s) on %d patients; mean effect %.4f",
            self.learner,
            self.base,
            len(X),
            float(tau.mean()),
        )
        return self

    def _outcome_model(self) -> Any:
        if self.binary_:
            if self.base == "linear":
                return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            return GradientBoostingClassifier(
                max_depth=3, learning_rate=0.05, n_estimators=100, random_state=self.seed
            )
        return self._effect_model()

    def _effect_model(self) -> Any:
        if self.base == "linear":
            return make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        return GradientBoostingRegressor(
            max_depth=3, learning_rate=0.05, n_estimators=100, random_state=self.seed
        )

    def _predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        if self.binary_ and hasattr(model, "predict_proba"):
            classes = list(model.classes_)
            if len(classes) == 1:  # a bootstrap arm with one outcome only
                return np.full(len(X), float(classes[0]))
            return np.asarray(model.predict_proba(X)[:, classes.index(1.0)])
        return np.asarray(model.predict(X), dtype=float)

    def _fit_outcome(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> Any:
        model = clone(self._outcome_model())
        if self.binary_ and len(np.unique(y)) < 2:
            return _Constant(float(y[0]))
        return _fit(model, X, y, w)

    def _s_design(self, X: np.ndarray, t: np.ndarray) -> np.ndarray:
        t = t.reshape(-1, 1).astype(float)
        if self.base == "linear":  # interactions let a linear S-learner vary the effect
            return np.hstack([X, t, X * t])
        return np.hstack([X, t])

    def _fit_once(
        self, X: np.ndarray, t: np.ndarray, y: np.ndarray, w: np.ndarray | None
    ) -> dict[str, Any]:
        if self.learner == "s":
            return {"s": self._fit_outcome(self._s_design(X, t), y, w)}
        treated, control = t == 1, t == 0
        w1, w0 = (None, None) if w is None else (w[treated], w[control])
        mu0 = self._fit_outcome(X[control], y[control], w0)
        mu1 = self._fit_outcome(X[treated], y[treated], w1)
        models: dict[str, Any] = {"mu0": mu0, "mu1": mu1}
        if self.learner == "x":
            d1 = y[treated] - self._predict(mu0, X[treated])
            d0 = self._predict(mu1, X[control]) - y[control]
            models["tau1"] = _fit(clone(self._effect_model()), X[treated], d1, w1)
            models["tau0"] = _fit(clone(self._effect_model()), X[control], d0, w0)
            models["g"] = float(np.average(t, weights=w))  # the treated share, weighted
        return models

    def _effect(self, models: dict[str, Any], X: np.ndarray) -> np.ndarray:
        if self.learner == "s":
            s = models["s"]
            ones, zeros = np.ones(len(X)), np.zeros(len(X))
            return self._predict(s, self._s_design(X, ones)) - self._predict(
                s, self._s_design(X, zeros)
            )
        if self.learner == "t":
            return self._predict(models["mu1"], X) - self._predict(models["mu0"], X)
        g = models["g"]
        tau1 = np.asarray(models["tau1"].predict(X), float)
        tau0 = np.asarray(models["tau0"].predict(X), float)
        return np.asarray(g * tau0 + (1 - g) * tau1)

    # --- prediction ------------------------------------------------------------------

    def _check_fitted(self, X: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise NotFittedError("TreatmentEffects is not fitted; call fit first")
        X = _frame(X)
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InvalidInputError(f"missing feature columns: {missing}")
        return X[self.feature_names_].to_numpy(dtype=float)

    def effect(self, X: pd.DataFrame) -> pd.Series:
        """Point estimates of the benefit of treatment over control, indexed like X."""
        Xa = self._check_fitted(X)
        return pd.Series(self._effect(self.models_, Xa), index=X.index)

    def estimate(self, X: pd.DataFrame) -> pd.DataFrame:
        """Columns benefit, lower, upper, clear_benefit, recommendation (indexed like X).

        The interval is the bootstrap percentile interval; with `n_bootstrap=0` there is
        none (lower and upper are NaN), so no benefit or harm is called clear.
        """
        Xa = self._check_fitted(X)
        point = self._effect(self.models_, Xa)
        if self.boot_models_:
            draws = np.vstack([self._effect(m, Xa) for m in self.boot_models_])
            lower, upper = percentile_interval(draws, self.alpha)
        else:
            lower = upper = np.full(len(point), np.nan)
        frame = pd.DataFrame({"benefit": point, "lower": lower, "upper": upper}, index=X.index)
        frame["clear_benefit"] = frame["lower"] > 0
        frame["recommendation"] = np.select(
            [frame["lower"] > 0, frame["upper"] < 0],
            [CLEAR_BENEFIT, CLEAR_HARM],
            default=NO_CLEAR_BENEFIT,
        )
        return frame

    def _outcomes(self, models: dict[str, Any], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.learner == "s":
            ones, zeros = np.ones(len(X)), np.zeros(len(X))
            s = models["s"]
            return self._predict(s, self._s_design(X, zeros)), self._predict(
                s, self._s_design(X, ones)
            )
        return self._predict(models["mu0"], X), self._predict(models["mu1"], X)

    def potential_outcomes(self, X: pd.DataFrame) -> pd.DataFrame:
        """The expected outcome under each arm with its bootstrap interval (for binary
        outcomes: the probability), indexed like X. Columns: control, control_lower,
        control_upper, treated, treated_lower, treated_upper (NaN without a bootstrap)."""
        Xa = self._check_fitted(X)
        mu0, mu1 = self._outcomes(self.models_, Xa)
        frame = pd.DataFrame({"control": mu0, "treated": mu1}, index=X.index)
        for arm in ("control", "treated"):
            if self.boot_models_:
                draws = np.vstack(
                    [self._outcomes(m, Xa)[arm == "treated"] for m in self.boot_models_]
                )
                frame[f"{arm}_lower"], frame[f"{arm}_upper"] = percentile_interval(
                    draws, self.alpha
                )
            else:  # no bootstrap, no interval
                frame[f"{arm}_lower"] = frame[f"{arm}_upper"] = np.nan
        order = [f"{a}{s}" for a in ("control", "treated") for s in ("", "_lower", "_upper")]
        return frame[order]

    def drivers(self, X: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
        """The `top` features that move each patient's estimate most: a feature's
        contribution is the estimate minus what it would be with that feature at the
        training cohort's mean and the others as they are (in effect units; the model's
        own answer, so it never overshoots the way a linear summary does at the
        extremes). Long frame: patient (X's index), rank, feature, value, contribution."""
        Xa = self._check_fitted(X)
        n, k = Xa.shape
        contributions = np.empty((n, k))
        block = max(1, 20_000 // max(k, 1))  # patients per batch: at most ~20k rows
        for start in range(0, n, block):
            rows = Xa[start : start + block]
            averaged = np.repeat(rows, k, axis=0)  # each patient k times...
            column = np.tile(np.arange(k), len(rows))  # ...with feature j at its mean
            averaged[np.arange(len(averaged)), column] = self.mean_[column]
            point = self._effect(self.models_, rows)
            moved = self._effect(self.models_, averaged).reshape(len(rows), k)
            contributions[start : start + block] = point[:, None] - moved
        return drivers_frame(contributions, Xa, X.index, self.feature_names_, top=top)


class _Constant:
    """Stands in for a classifier when a bootstrap arm has a single outcome class."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), self.value)


def _fit(model: Any, X: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> Any:
    """`model.fit` with `weight` as sample_weight; a pipeline takes it once per step, under
    the step's name (the scaler too: a zero weight then leaves a row out entirely)."""
    if weight is None:
        return model.fit(X, y)
    if isinstance(model, Pipeline):
        return model.fit(X, y, **{f"{name}__sample_weight": weight for name, _ in model.steps})
    return model.fit(X, y, sample_weight=weight)


def event_free_by(
    time: np.ndarray | pd.Series,
    event: np.ndarray | pd.Series,
    treatment: np.ndarray | pd.Series,
    *,
    horizon: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The outcome "event-free by `horizon`" from censored follow-up, with inverse
    probability of censoring weights: (outcome, weight), one per patient.

    outcome is 0 for an event by the horizon and 1 for a patient followed beyond it (or
    censored at it) without one; a patient censored before the horizon has no known
    outcome (NaN, weight NaN) and is left out. The others are weighted by
    1 / G(min(time, horizon)), G the Kaplan-Meier survival of censoring estimated within
    each arm, since dropout may differ by arm: without the weights, an arm censored
    earlier loses its later events and looks better than it is. Refused when an arm has
    fewer than 5 patients still followed at the horizon.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event).astype(bool)
    t = np.asarray(treatment).astype(int)
    if not len(time) == len(event) == len(t):
        raise InvalidInputError("time, event and treatment need the same length")
    if not np.isfinite(horizon) or horizon <= 0:
        raise InvalidInputError(f"the horizon must be a positive time, got {horizon!r}")
    followed = time >= horizon
    at_risk = [int((followed & (t == arm)).sum()) for arm in (1, 0)]
    if min(at_risk) < MIN_PER_ARM:
        raise InvalidInputError(
            f"need at least {MIN_PER_ARM} treated and {MIN_PER_ARM} control patients followed "
            f"up to the horizon ({horizon:g}); {at_risk[0]} treated and {at_risk[1]} control "
            "are: choose an earlier horizon"
        )
    happened = event & (time <= horizon)
    known = happened | followed
    outcome = np.where(known, np.where(happened, 0.0, 1.0), np.nan)
    weight = np.full(len(time), np.nan)
    for arm in (0, 1):
        rows = t == arm
        censoring = CensoringDistributionEstimator().fit(survival_target(time[rows], event[rows]))
        at = rows & known
        uncensored = censoring.predict_proba(np.minimum(time[at], horizon))
        if (uncensored <= 0).any():  # everyone left at some time was censored there
            raise InvalidInputError(
                f"the {('control', 'treated')[arm]} arm's follow-up ends by the horizon "
                f"({horizon:g}): choose an earlier horizon"
            )
        weight[at] = 1.0 / uncensored
    return outcome, weight


def _frame(X: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise InvalidInputError("X must be a pandas DataFrame of numeric features")
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise InvalidInputError(f"non-numeric feature columns (encode them first): {bad}")
    return X


def treat_if_benefit(
    learner: str = "t", base: str = "linear", *, n_bootstrap: int = 0, seed: int = 0
) -> Any:
    """A policy learner for `policy.cross_fitted_policy_value`: treat when benefit > 0."""

    def learn(X: pd.DataFrame, t: np.ndarray, y: np.ndarray) -> Any:
        model = TreatmentEffects(learner, base, n_bootstrap=n_bootstrap, seed=seed).fit(X, t, y)

        def rule(Xn: pd.DataFrame) -> np.ndarray:
            return (model.effect(Xn).to_numpy() > 0).astype(int)

        return rule

    return learn
