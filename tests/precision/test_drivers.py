"""The linear surrogate that names what drives one patient's estimate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError, NotFittedError
from medloop.precision import LinearSurrogate


def test_drivers_recover_the_features_that_move_an_estimate() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"marker": rng.normal(size=500), "age": rng.normal(60, 10, 500), "flat": 1.0},
        index=[f"P{i}" for i in range(500)],
    )
    estimate = 0.3 * X["marker"] - 0.01 * (X["age"] - 60)  # marker: 0.3 per SD; age: 0.1
    surrogate = LinearSurrogate(alpha=1e-6).fit(X, estimate)
    contributions = surrogate.contributions(X)
    # contributions add up to the estimate's distance from the average patient's
    assert np.allclose(contributions.sum(axis=1), estimate - estimate.mean(), atol=1e-6)
    assert contributions["flat"].eq(0).all()  # a constant feature moves nothing
    patient = X.iloc[[0]].assign(marker=2.0, age=60.0)
    drivers = surrogate.drivers(patient, top=2)
    assert drivers["feature"].tolist() == ["marker", "age"] and drivers["rank"].tolist() == [1, 2]
    assert drivers["patient"].eq("P0").all() and drivers["value"].iloc[0] == 2.0
    assert drivers["contribution"].iloc[0] == pytest.approx(0.3 * (2.0 - X["marker"].mean()), 1e-3)


def test_drivers_refuse_bad_input() -> None:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0]})
    with pytest.raises(NotFittedError):
        LinearSurrogate().drivers(X)
    with pytest.raises(InvalidInputError, match="same number of rows"):
        LinearSurrogate().fit(X, [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="missing values"):
        LinearSurrogate().fit(X, [1.0, np.nan, 2.0])
    with pytest.raises(InvalidInputError, match="missing feature columns: \\['a'\\]"):
        LinearSurrogate().fit(X, [1.0, 2.0, 3.0]).drivers(pd.DataFrame({"b": [1.0]}))
