"""Calibrated risk classifiers on scikit-learn's Wisconsin breast-cancer data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.precision import (
    RiskClassifier,
    bootstrap_risk_interval,
    classification_metrics,
    cross_validate_risk,
)


@pytest.mark.parametrize("method", ["logistic", "gbm"])
def test_calibrated_risk_on_real_data(method: str) -> None:
    data = load_breast_cancer(as_frame=True)
    X, y = data.data, 1 - data.target  # 1 = malignant
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    model = RiskClassifier(method, calibration="sigmoid", cv=3).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    metrics = classification_metrics(y_test, proba, bins=5)
    assert metrics["auc"] > 0.97
    assert metrics["brier"] < 0.06
    cal = metrics["calibration"]
    assert max(abs(p - o) for p, o in zip(cal["predicted"], cal["observed"], strict=True)) < 0.2


def test_cross_validated_risk_and_errors() -> None:
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:, :5], 1 - data.target
    oof, metrics = cross_validate_risk(RiskClassifier("logistic", cv=3), X, y, n_splits=3)
    assert len(oof) == len(X) and metrics["auc"] > 0.9
    with pytest.raises(UnknownOptionError):
        RiskClassifier("svm").fit(X, y)
    with pytest.raises(InvalidInputError, match="both classes"):
        RiskClassifier().fit(X, pd.Series(0, index=X.index))


def _logistic_cohort(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Patients whose true risk is a known logistic function of two features."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"marker": rng.normal(size=n), "age": rng.normal(size=n)})
    truth = 1 / (1 + np.exp(-(1.5 * X["marker"] - 0.5)))
    return X, rng.binomial(1, truth).astype(int), truth.to_numpy()


def test_bootstrap_intervals_cover_the_true_risk_and_narrow_with_more_patients() -> None:
    model = RiskClassifier("logistic")
    widths = []
    for n in (400, 1600):
        X, y, truth = _logistic_cohort(n)
        interval = bootstrap_risk_interval(model, X, y, X, n_bootstrap=39, seed=1)
        assert list(interval.columns) == ["lower", "upper"] and interval.index.equals(X.index)
        assert (interval["lower"] <= interval["upper"]).all()
        covered = (interval["lower"] <= truth) & (truth <= interval["upper"])
        assert covered.mean() > 0.85  # one cohort's error is shared by all its patients
        widths.append(float((interval["upper"] - interval["lower"]).mean()))
    assert widths[1] < 0.6 * widths[0]  # four times the patients: about half the width
    with pytest.raises(InvalidInputError, match="at least 39 refits"):
        bootstrap_risk_interval(model, X, y, X, n_bootstrap=1)
    with pytest.raises(InvalidInputError, match="5\\+ patients of each class"):
        bootstrap_risk_interval(model, X, np.r_[np.ones(3), np.zeros(len(y) - 3)], X)
