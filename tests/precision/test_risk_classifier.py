"""Calibrated risk classifiers on scikit-learn's Wisconsin breast-cancer data."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.precision import RiskClassifier, classification_metrics, cross_validate_risk


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
