"""Survival risk models (scikit-survival) and their evaluation.

`SurvivalModel` wraps Cox PH, random survival forest, gradient-boosted survival, or
an ensemble averaging the three survival curves; `bootstrap_band` gives per-patient
percentile bands from refits on bootstrap resamples. Targets are scikit-survival
structured arrays; build one with `survival_target(time, event)`. `survival_metrics`
gives Harrell's C-index, the mean time-dependent AUC and the integrated Brier score on
held-out data, `cross_validate_survival` the same out of fold; `calibration_table` and
`calibration_plot` compare predicted and Kaplan-Meier survival at one horizon by risk
group; `survival_plot` draws one patient's curve with its band (PNG bytes).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold
from sksurv.ensemble import RandomSurvivalForest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    concordance_index_censored,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision.boosting import CoxBoost
from medloop.precision.intervals import REFITS, check_refits, percentile_interval, run_refits

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("cox", "rsf", "gbsa", "ensemble")
#: `cross_validate_survival` names a figure's spread across folds "<figure>_sd".
SPREAD_SUFFIX = "_sd"


def survival_target(time: Any, event: Any) -> np.ndarray:
    """A scikit-survival target: structured array with fields `event` (bool), `time`."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event)
    if len(time) != len(event):
        raise InvalidInputError("time and event need the same length")
    if not np.isfinite(time).all() or (time < 0).any():
        raise InvalidInputError("survival times must be finite, non-negative numbers")
    if not np.isin(event, (0, 1, True, False)).all():
        raise InvalidInputError("event must be 0/1 (1 = the event happened)")
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event.astype(bool), time
    return y


def followup_horizon(time: Any) -> float:
    """The horizon a cohort's risk is stated at: the median time on record, event or
    censoring (half the patients are still followed, event-free, there, so the risk by
    then is well estimated; not the median follow-up, which counts events as followed)."""
    return float(np.median(np.asarray(time, dtype=float)))


#: Patients with the event a survival fit (and each bootstrap resample) needs at least.
MIN_EVENTS = 2
#: The most distinct event times a random survival forest learns on. scikit-survival's
#: forest scores every split and keeps every leaf's curves at each distinct time of its
#: target, so its cost grows with patients x distinct times, nearly quadratically once
#: times are recorded finely (1,500 patients with 1,500 distinct times: 22 s of CPU for
#: one forest, against 2.6 s for GBSG2's 686). Above this many distinct event times,
#: events are grouped into this many quantile intervals of the event times (the same
#: idea as randomForestSRC's `ntime` grid, 150 times by default there); GBSG2, with 270,
#: keeps every one.
FOREST_TIMES = 300
#: Resamples drawn per bootstrap refit at most before giving up on too few events.
MAX_REDRAWS = 20


def _fields(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(event, time) of a scikit-survival target: fields (event: bool, time: number), in
    that order, as `survival_target` builds it."""
    names = y.dtype.names
    if names is None or len(names) != 2 or y.dtype[0] != np.bool_ or y.dtype[1].kind not in "fiu":
        raise InvalidInputError(
            "y must be a structured array with fields (event: bool, time: number), as "
            "survival_target(time, event) builds it"
        )
    return np.asarray(y[names[0]], bool), np.asarray(y[names[1]], float)


def forest_target(y: np.ndarray, *, max_times: int = FOREST_TIMES) -> np.ndarray:
    """`y` on the time grid a random survival forest learns on: each event moved to the
    nearest grid time at or after it, each censoring to the nearest grid time at or before
    it (0 before the first), the grid being every distinct event time, or `max_times`
    quantiles of them where there are more. With every event time in the grid nothing
    the forest computes changes (its log-rank splits and curves only change at event
    times, and a censored patient stays at risk up to the last event time before they
    left); with fewer, an event counts from the end of its interval, at most 1 /
    `max_times` of the events early."""
    event, time = _fields(y)
    grid = np.unique(time[event])
    if len(grid) > max_times:
        grid = np.unique(np.quantile(grid, np.linspace(0, 1, max_times), method="lower"))
    moved = time.copy()
    moved[event] = grid[np.searchsorted(grid, time[event], side="left")]
    before = np.searchsorted(grid, time[~event], side="right") - 1
    moved[~event] = np.where(before >= 0, grid[np.maximum(before, 0)], 0.0)
    return survival_target(moved, event)


class SurvivalModel:
    """A survival model over a numeric feature frame.

    `method`: "cox" (Cox PH, ridge penalty `alpha`), "rsf" (random survival forest),
    "gbsa" (gradient-boosted Cox), or "ensemble" (mean survival curve of the three).
    Learned: `models_` (name -> fitted estimator), `feature_names_`, `event_times_`.
    """

    def __init__(
        self,
        method: str = "ensemble",
        *,
        alpha: float = 0.1,
        n_estimators: int = 300,
        min_samples_leaf: int = 15,
        seed: int = 0,
        n_jobs: int = 1,
    ) -> None:
        # checked here, not at fit: a caller learns of a wrong option before any work
        if method not in METHODS:
            raise UnknownOptionError(f"unknown method {method!r}; choose one of {METHODS}")
        self.method = method
        self.alpha = alpha
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed
        self.n_jobs = n_jobs

    def unfitted(self) -> SurvivalModel:
        """A new, unfitted model with these settings."""
        return SurvivalModel(
            self.method,
            alpha=self.alpha,
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            seed=self.seed,
            n_jobs=self.n_jobs,
        )

    def _estimators(self) -> dict[str, Any]:
        make = {
            "cox": lambda: CoxPHSurvivalAnalysis(alpha=self.alpha),
            "rsf": lambda: RandomSurvivalForest(
                n_estimators=self.n_estimators,
                min_samples_leaf=self.min_samples_leaf,
                max_features="sqrt",
                random_state=self.seed,
                n_jobs=self.n_jobs,
            ),
            "gbsa": lambda: CoxBoost(
                n_estimators=200,
                learning_rate=0.05,
                max_depth=2,
                subsample=0.8,
                random_state=self.seed,
            ),
        }
        names = ["cox", "rsf", "gbsa"] if self.method == "ensemble" else [self.method]
        return {name: make[name]() for name in names}

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> SurvivalModel:
        _check_frame(X)
        event, time = _fields(y)
        if len(X) != len(y):
            raise InvalidInputError("X and y need the same number of rows")
        if event.sum() < MIN_EVENTS:
            raise InvalidInputError("need at least two events to fit a survival model")
        self.feature_names_ = list(X.columns)
        Xa = X.to_numpy(dtype=float)
        self.models_ = {
            name: est.fit(Xa, forest_target(y) if name == "rsf" else y)
            for name, est in self._estimators().items()
        }
        self.event_times_ = np.unique(time[event])
        logger.info("fitted %s survival model on %d patients", self.method, len(X))
        return self

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise NotFittedError("SurvivalModel is not fitted; call fit first")
        _check_frame(X)
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InvalidInputError(f"missing feature columns: {missing}")
        return X[self.feature_names_].to_numpy(dtype=float)

    def predict_survival(self, X: pd.DataFrame, times: Any) -> pd.DataFrame:
        """P(event-free at t) for each patient (rows, X's index) and time (columns)."""
        Xa = self._matrix(X)
        times = np.asarray(times, dtype=float)
        lo, hi = self.event_times_[0], self.event_times_[-1]
        clipped = np.clip(times, lo, hi)
        curves = []
        for model in self.models_.values():
            fns = model.predict_survival_function(Xa)
            curves.append(np.vstack([fn(clipped) for fn in fns]))
        surv = np.mean(curves, axis=0)
        surv[:, times < lo] = 1.0
        return pd.DataFrame(surv, index=X.index, columns=times)

    def predict_risk(self, X: pd.DataFrame) -> pd.Series:
        """A risk score (higher = earlier event): expected time lost over the event times."""
        times = self.event_times_
        surv = self.predict_survival(X, times).to_numpy()
        widths = np.diff(np.concatenate([[0.0], times]))
        return pd.Series(-(surv * widths).sum(axis=1), index=X.index, name="risk")


def bootstrap_band(
    X: pd.DataFrame,
    y: np.ndarray,
    X_new: pd.DataFrame,
    times: Any,
    *,
    method: str = "ensemble",
    n_bootstrap: int = REFITS,
    alpha: float = 0.05,
    seed: int = 0,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(lower, upper): the (1 - alpha) percentile band of P(event-free at t) for the rows
    of `X_new`, over `SurvivalModel(method)` refits on bootstrap resamples of (X, y).
    `progress` is called with (refits done, n_bootstrap) after each refit.

    Each refit is dropped once it has predicted (a forest can weigh tens of MB), so the
    band is for the patients given now; new patients need a new band. `n_jobs` worker
    processes run the refits (`intervals.run_refits`); the band does not depend on it.
    """
    check_refits(n_bootstrap, alpha)  # 39+ for a 95% band (`intervals`)
    event, _ = _fields(y)
    if event.sum() < MIN_EVENTS:
        raise InvalidInputError(
            f"a bootstrap band needs at least {MIN_EVENTS} patients with the event, "
            f"got {int(event.sum())}"
        )
    times = np.asarray(times, dtype=float)
    rng = np.random.default_rng(seed)
    resamples: list[np.ndarray] = []
    for _ in range(MAX_REDRAWS * n_bootstrap):
        if len(resamples) == n_bootstrap:
            break
        rows = rng.choice(len(y), len(y))
        if np.unique(rows[event[rows]]).size >= MIN_EVENTS:  # distinct patients, not copies
            resamples.append(rows)
    if len(resamples) < n_bootstrap:
        raise InvalidInputError(
            f"too few events for a bootstrap band: {MAX_REDRAWS * n_bootstrap} resamples "
            f"gave {len(resamples)} with {MIN_EVENTS} or more"
        )
    draws = run_refits(
        _refit_survival,
        (
            (method, seed + i, X.iloc[rows], y[rows], X_new, times)
            for i, rows in enumerate(resamples)
        ),
        n_jobs=n_jobs,
        progress=None if progress is None else lambda done: progress(done, n_bootstrap),
    )
    lower, upper = percentile_interval(np.stack(draws), alpha)
    return (
        pd.DataFrame(lower, index=X_new.index, columns=times),
        pd.DataFrame(upper, index=X_new.index, columns=times),
    )


def _refit_survival(
    method: str, seed: int, X: pd.DataFrame, y: np.ndarray, X_new: pd.DataFrame, times: Any
) -> np.ndarray:
    """One refit of a bootstrap band: its P(event-free at `times`) for the rows of `X_new`."""
    return SurvivalModel(method, seed=seed).fit(X, y).predict_survival(X_new, times).to_numpy()


def survival_metrics(
    y_train: np.ndarray,
    y_test: np.ndarray,
    survival: pd.DataFrame | np.ndarray,
    risk: Any,
    times: Any,
) -> dict[str, float]:
    """Harrell's C-index, mean time-dependent AUC and integrated Brier score.

    `survival` is P(event-free) for the test rows at `times`; `risk` a score where higher
    means earlier events; `y_train` estimates the censoring distribution.
    """
    event, time = _fields(y_test)
    risk = np.asarray(risk, dtype=float)
    surv = np.asarray(survival, dtype=float)
    times = np.asarray(times, dtype=float)
    cindex = concordance_index_censored(event, time, risk)[0]
    _, mean_auc = cumulative_dynamic_auc(y_train, y_test, risk, times)
    ibs = integrated_brier_score(y_train, y_test, surv, times)
    return {"cindex": float(cindex), "mean_auc": float(mean_auc), "ibs": float(ibs)}


def evaluation_times(
    y_censoring: np.ndarray, y_test: np.ndarray, *, points: int = 20
) -> np.ndarray | None:
    """Where to score held-out survival over time: `points` times from the 10th to the
    80th percentile of the held-out follow-up, below the longest follow-up of
    `y_censoring` and where its censoring distribution is still above zero (the
    time-dependent AUC and the Brier score weight by it). None when no such range is
    left (a small fold)."""
    _, test_time = _fields(y_test)
    event, time = _fields(y_censoring)
    lo, hi = np.percentile(test_time, [10, 80])
    km_time, km_censoring = kaplan_meier_estimator(~event, time)
    gone = km_time[km_censoring <= 0]
    limit = min(float(time.max()), float(gone.min()) if len(gone) else np.inf)
    hi = min(hi, limit - 1e-9)
    return np.linspace(lo, hi, points) if hi > lo else None


def cross_validate_survival(
    model: SurvivalModel,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    horizon: float,
    n_splits: int = 5,
    groups: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Out-of-fold evaluation of `model`'s settings over `n_splits` folds stratified on
    the event: `cindex`, `mean_auc` and `ibs` (`survival_metrics` of each fold, averaged)
    with their standard deviations across folds (`cindex_sd`, ...; a fold whose
    follow-up is too short to score over time counts for the C-index only), and
    `calibration`, the `calibration_table` of every patient's out-of-fold P(event-free at
    `horizon`) in `groups` groups. `progress` is called with (folds done, n_splits) after
    each fold."""
    event, _ = _fields(y)
    if len(X) != len(y):
        raise InvalidInputError("X and y need the same number of rows")
    if min(int(event.sum()), int((~event).sum())) < n_splits:
        raise InvalidInputError(
            f"{n_splits}-fold cross-validation needs {n_splits}+ patients with and "
            f"without the event; got {int(event.sum())} events in {len(y)} patients"
        )
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    per_fold = []
    at_horizon = np.empty(len(y))
    for done, (train, test) in enumerate(folds.split(X, event), start=1):
        fitted = model.unfitted().fit(X.iloc[train], y[train])
        held_out = X.iloc[test]
        risk = fitted.predict_risk(held_out).to_numpy()
        test_event, test_time = _fields(y[test])
        scores = {"cindex": np.nan, "mean_auc": np.nan, "ibs": np.nan}
        try:
            scores["cindex"] = float(concordance_index_censored(test_event, test_time, risk)[0])
        except ValueError as error:  # a small fold with no pair of patients to compare
            logger.info("fold %d has no C-index: %s", done, error)
        times = evaluation_times(y, y[test])  # censoring weights from everyone, as the
        if times is not None:  # scikit-survival evaluation guide does
            with np.errstate(invalid="ignore", divide="ignore"):
                try:
                    scores = survival_metrics(
                        y, y[test], fitted.predict_survival(held_out, times), risk, times
                    )
                except ValueError as error:  # a small fold's follow-up is too short
                    logger.info("fold %d scored by C-index only: %s", done, error)
        per_fold.append(scores)
        at_horizon[test] = fitted.predict_survival(held_out, [horizon]).iloc[:, 0]
        if progress is not None:
            progress(done, n_splits)
    figures = pd.DataFrame(per_fold)
    if figures.isna().all().any():
        raise InvalidInputError(
            f"{len(y)} patients with {int(event.sum())} events are too few to score a "
            f"survival model over time in {n_splits} folds; add patients or follow-up"
        )
    result: dict[str, Any] = {name: float(figures[name].mean()) for name in figures}
    result |= {name + SPREAD_SUFFIX: float(figures[name].std(ddof=1)) for name in figures}
    result["calibration"] = calibration_table(y, at_horizon, horizon=horizon, groups=groups)
    return result


def calibration_table(
    y: np.ndarray, survival_at: Any, *, horizon: float, groups: int = 5
) -> pd.DataFrame:
    """Predicted vs Kaplan-Meier survival at `horizon`, by quantile group of prediction.

    Columns: group, n, predicted (mean), observed (KM at horizon).
    """
    event, time = _fields(y)
    pred = np.asarray(survival_at, dtype=float)
    codes = pd.qcut(pd.Series(pred).rank(method="first"), groups, labels=False).to_numpy()
    rows = []
    for g in range(groups):
        mask = codes == g
        km_t, km_s = kaplan_meier_estimator(event[mask], time[mask])
        below = km_t <= horizon
        observed = float(km_s[below][-1]) if below.any() else 1.0
        rows.append(
            {
                "group": g,
                "n": int(mask.sum()),
                "predicted": float(pred[mask].mean()),
                "observed": observed,
            }
        )
    return pd.DataFrame(rows)


def calibration_plot(table: pd.DataFrame, path: Path, *, title: str = "calibration") -> Path:
    """Write a predicted-vs-observed survival plot (PNG) of a `calibration_table`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax.plot(table["predicted"], table["observed"], "o-", label="model")
    ax.set_xlabel("predicted survival")
    ax.set_ylabel("observed (Kaplan-Meier)")
    ax.set_title(title)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def survival_plot(
    times: Any,
    survival: Any,
    *,
    lower: Any = None,
    upper: Any = None,
    horizon: float | None = None,
    title: str = "predicted survival",
    time_unit: str | None = None,
) -> bytes:
    """One patient's predicted survival curve (steps) with its band, as PNG bytes; the
    time axis names `time_unit` when it is known. The curve starts at time 0, where
    everyone is event-free; the legend sits under the axes, off the curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.asarray(times, dtype=float)
    surv = np.asarray(survival, dtype=float)
    if t.ndim != 1 or len(t) == 0 or surv.shape != t.shape:
        raise InvalidInputError("survival_plot needs equally long, non-empty times and survival")
    start = [0.0] if t[0] > 0 else []  # S(0) = 1, and the band is exact there
    t, surv = np.concatenate([start, t]), np.concatenate([[1.0] * len(start), surv])
    fig, ax = plt.subplots(figsize=(5, 3.6))
    if lower is not None and upper is not None:
        ax.fill_between(
            t,
            np.concatenate([[1.0] * len(start), np.asarray(lower, float)]),
            np.concatenate([[1.0] * len(start), np.asarray(upper, float)]),
            step="post",
            alpha=0.25,
            label="95% bootstrap band",
        )
    ax.step(t, surv, where="post", lw=2, label="model")
    if horizon is not None:
        ax.axvline(horizon, color="k", ls=":", lw=1, label="risk horizon")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_xlabel("time" if not time_unit else f"time ({time_unit})")
    ax.set_ylabel("P(event-free)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _check_frame(X: pd.DataFrame) -> None:
    if not isinstance(X, pd.DataFrame):
        raise InvalidInputError("X must be a pandas DataFrame of numeric features")
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise InvalidInputError(f"non-numeric feature columns (encode them first): {bad}")
    if X.isna().any().any():
        raise InvalidInputError("features contain missing values; impute them first")
