"""Calibrated risk classifiers: gradient boosting and a logistic-regression baseline.

`RiskClassifier` predicts P(outcome = 1) for binary outcomes, calibrated by
cross-validation (isotonic or sigmoid); `classification_metrics` reports AUC, Brier
score, log loss and a calibration curve; `cross_validate_risk` gives out-of-fold
probabilities and metrics; `bootstrap_risk_interval` a per-patient interval from refits
on bootstrap resamples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision.intervals import REFITS, check_refits, percentile_interval, run_refits

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("gbm", "logistic")
CALIBRATIONS: tuple[str, ...] = ("isotonic", "sigmoid", "none")


class RiskClassifier:
    """Binary risk model over a numeric feature frame.

    `method` "gbm" (gradient boosting, single-threaded) or "logistic"; `calibration`
    "isotonic", "sigmoid" or "none"; `cv` folds for calibration.
    Learned: `model_`, `feature_names_`, `prevalence_`.
    """

    def __init__(
        self,
        method: str = "gbm",
        *,
        calibration: str = "sigmoid",
        cv: int = 5,
        seed: int = 0,
    ) -> None:
        # checked here, not at fit: a caller learns of a wrong option before any work
        if method not in METHODS:
            raise UnknownOptionError(f"unknown method {method!r}; choose one of {METHODS}")
        if calibration not in CALIBRATIONS:
            raise UnknownOptionError(
                f"unknown calibration {calibration!r}; choose one of {CALIBRATIONS}"
            )
        self.method = method
        self.calibration = calibration
        self.cv = cv
        self.seed = seed

    def unfitted(self, *, seed: int | None = None) -> RiskClassifier:
        """A new, unfitted classifier with these settings (and `seed`, if given)."""
        return RiskClassifier(
            self.method,
            calibration=self.calibration,
            cv=self.cv,
            seed=self.seed if seed is None else seed,
        )

    def _base(self) -> Any:
        if self.method == "gbm":
            return GradientBoostingClassifier(
                max_depth=3, learning_rate=0.05, n_estimators=150, random_state=self.seed
            )
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    def fit(self, X: pd.DataFrame, y: Any) -> RiskClassifier:
        Xa = _matrix(X)
        target = np.asarray(y)
        if len(target) != len(Xa):
            raise InvalidInputError("X and y need the same number of rows")
        if not np.isin(target, (0, 1)).all() or len(np.unique(target)) < 2:
            raise InvalidInputError("y must be 0/1 with both classes present")
        target = target.astype(int)
        self.feature_names_ = list(X.columns)
        self.prevalence_ = float(target.mean())
        if self.calibration == "none":
            self.model_ = self._base().fit(Xa, target)
        else:
            self.model_ = CalibratedClassifierCV(
                self._base(), method=self.calibration, cv=self.cv
            ).fit(Xa, target)
        logger.info("fitted %s risk model on %d patients", self.method, len(Xa))
        return self

    def predict_proba(self, X: pd.DataFrame) -> pd.Series:
        """P(outcome = 1) per patient, indexed like X."""
        if not hasattr(self, "model_"):
            raise NotFittedError("RiskClassifier is not fitted; call fit first")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InvalidInputError(f"missing feature columns: {missing}")
        proba = self.model_.predict_proba(_matrix(X[self.feature_names_]))[:, 1]
        return pd.Series(proba, index=X.index, name="risk")


def classification_metrics(y: Any, proba: Any, *, bins: int = 10) -> dict[str, Any]:
    """AUC, Brier score, log loss and the calibration curve (predicted, observed)."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-6, 1 - 1e-6)
    observed, predicted = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    return {
        "auc": float(roc_auc_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p)),
        "calibration": {"predicted": predicted.tolist(), "observed": observed.tolist()},
    }


def cross_validate_risk(
    model: RiskClassifier,
    X: pd.DataFrame,
    y: Any,
    *,
    n_splits: int = 5,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.Series, dict[str, Any]]:
    """Out-of-fold probabilities and their metrics; `progress` is called with (folds
    done, n_splits) after each fold."""
    target = np.asarray(y, dtype=int)
    oof = np.empty(len(X))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for done, (train, test) in enumerate(folds.split(X, target), start=1):
        fold_model = model.unfitted().fit(X.iloc[train], target[train])
        oof[test] = fold_model.predict_proba(X.iloc[test]).to_numpy()
        if progress is not None:
            progress(done, n_splits)
    proba = pd.Series(oof, index=X.index, name="risk")
    return proba, classification_metrics(target, oof)


def bootstrap_risk_interval(
    model: RiskClassifier,
    X: pd.DataFrame,
    y: Any,
    X_new: pd.DataFrame,
    *,
    n_bootstrap: int = REFITS,
    alpha: float = 0.05,
    seed: int = 0,
    n_jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Columns lower, upper: the (1 - alpha) percentile interval of P(outcome = 1) for the
    rows of `X_new`, over refits of `model`'s settings on bootstrap resamples of (X, y).
    A resample with fewer than `model.cv` patients of either class (too few for its
    calibration folds) is drawn again. `n_jobs` worker processes run the refits
    (`intervals.run_refits`; the interval does not depend on it). `progress` is called
    with (refits done, n_bootstrap) after each refit."""
    check_refits(n_bootstrap, alpha)  # 39+ for a 95% interval (`intervals`)
    target = np.asarray(y, dtype=int)
    fewest = model.cv if model.calibration != "none" else 1
    if min(np.bincount(target, minlength=2)) < fewest:
        raise InvalidInputError(f"a bootstrap interval needs {fewest}+ patients of each class")
    rng = np.random.default_rng(seed)
    resamples: list[np.ndarray] = []
    while len(resamples) < n_bootstrap:
        rows = rng.choice(len(target), len(target))
        if min(np.bincount(target[rows], minlength=2)) >= fewest:
            resamples.append(rows)
    draws = run_refits(
        _refit,
        (
            (model.unfitted(seed=seed + i), X.iloc[rows], target[rows], X_new)
            for i, rows in enumerate(resamples)
        ),
        n_jobs=n_jobs,
        progress=None if progress is None else lambda done: progress(done, n_bootstrap),
    )
    lower, upper = percentile_interval(np.stack(draws), alpha)
    return pd.DataFrame({"lower": lower, "upper": upper}, index=X_new.index)


def _refit(
    model: RiskClassifier, X: pd.DataFrame, y: np.ndarray, X_new: pd.DataFrame
) -> np.ndarray:
    """One bootstrap refit: its P(outcome = 1) for the rows of `X_new`."""
    return model.fit(X, y).predict_proba(X_new).to_numpy()


def _matrix(X: pd.DataFrame) -> np.ndarray:
    if not isinstance(X, pd.DataFrame):
        raise InvalidInputError("X must be a pandas DataFrame of numeric features")
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise InvalidInputError(f"non-numeric feature columns (encode them first): {bad}")
    return X.to_numpy(dtype=float)
