"""What drives a model's estimate for one patient, against the average patient.

`LinearSurrogate` fits a ridge regression of any per-patient estimate (e.g. a risk
model's log hazard) on standardised features, then explains each patient's estimate as the
sum of per-feature contributions, coefficient x standardised value. It is a summary of
the model, not the model: the drivers say which features move the estimate most, in the
estimate's own units, for a doctor reading one patient's page. Fit it on a scale where
the model is close to linear (a risk model's log hazard or log odds): on a bounded scale
such as a probability, linear contributions overshoot at the extremes. `drivers_frame`
ranks any per-feature contributions the same way.

>>> X = pd.DataFrame({"age": [40.0, 50.0, 60.0, 70.0], "bmi": [22.0, 30.0, 22.0, 30.0]})
>>> surrogate = LinearSurrogate().fit(X, [0.1, 0.2, 0.3, 0.4])
>>> surrogate.drivers(X.iloc[[3]], top=1)["feature"].tolist()
['age']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from medloop.exceptions import InvalidInputError, NotFittedError

DRIVER_COLUMNS = ["patient", "rank", "feature", "value", "contribution"]


class LinearSurrogate:
    """Ridge surrogate (`alpha`) of a per-patient estimate over standardised features.

    Learned: `feature_names_`, `mean_`, `scale_` (standard deviation, 1 for constant
    features), `coef_` (per standardised feature, in the estimate's units).
    """

    def __init__(self, *, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: pd.DataFrame, estimate: Any) -> LinearSurrogate:
        Xa = X.to_numpy(dtype=float)
        target = np.asarray(estimate, dtype=float)
        if len(target) != len(Xa):
            raise InvalidInputError("X and the estimate need the same number of rows")
        if np.isnan(Xa).any() or np.isnan(target).any():
            raise InvalidInputError("X and the estimate must not contain missing values")
        self.feature_names_ = list(X.columns)
        self.mean_ = Xa.mean(axis=0)
        std = Xa.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.coef_ = Ridge(alpha=self.alpha).fit((Xa - self.mean_) / self.scale_, target).coef_
        return self

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per patient (X's index) and feature: how far the feature moves the estimate
        from the average patient's."""
        if not hasattr(self, "coef_"):
            raise NotFittedError("LinearSurrogate is not fitted; call fit first")
        missing = [c for c in self.feature_names_ if c not in X.columns]
        if missing:
            raise InvalidInputError(f"missing feature columns: {missing}")
        Xa = X[self.feature_names_].to_numpy(dtype=float)
        contrib = (Xa - self.mean_) / self.scale_ * self.coef_
        return pd.DataFrame(contrib, index=X.index, columns=self.feature_names_)

    def drivers(self, X: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
        """The `top` features that move each patient's estimate most. Long frame:
        patient (X's index), rank, feature, value, contribution."""
        contributions = self.contributions(X).to_numpy()  # checks fitted and columns
        values = X[self.feature_names_].to_numpy(dtype=float)
        return drivers_frame(contributions, values, X.index, self.feature_names_, top=top)


def drivers_frame(
    contributions: np.ndarray,
    values: np.ndarray,
    patients: pd.Index,
    features: list[str],
    *,
    top: int = 3,
) -> pd.DataFrame:
    """Per patient (a row of `contributions` and `values`, one column per feature), its
    `top` features by absolute contribution. Long frame: patient, rank, feature, value,
    contribution."""
    rows = []
    for i, patient in enumerate(patients):
        strongest = np.argsort(-np.abs(contributions[i]), kind="stable")[:top]
        for rank, j in enumerate(strongest, start=1):
            rows.append(
                {
                    "patient": patient,
                    "rank": rank,
                    "feature": features[j],
                    "value": float(values[i, j]),
                    "contribution": float(contributions[i, j]),
                }
            )
    return pd.DataFrame(rows, columns=DRIVER_COLUMNS)
