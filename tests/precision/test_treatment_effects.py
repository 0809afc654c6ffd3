"""Meta-learners recover a planted heterogeneous effect; intervals say "no clear benefit"."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision import (
    CLEAR_BENEFIT,
    CLEAR_HARM,
    NO_CLEAR_BENEFIT,
    TreatmentEffects,
)


def planted(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Randomised trial: effect tau(x) = 2 * x1 (x2 is prognostic only, x3 is noise)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["x1", "x2", "x3"])
    t = rng.integers(0, 2, n)
    tau = 2.0 * X["x1"].to_numpy()
    y = X["x2"].to_numpy() + tau * t + rng.normal(scale=0.5, size=n)
    return X, t, y, tau


@pytest.mark.parametrize("learner", ["t", "s", "x"])
def test_recovers_planted_heterogeneous_effect(learner: str) -> None:
    X, t, y, tau = planted()
    model = TreatmentEffects(learner, "linear", n_bootstrap=0).fit(X, t, y)
    estimate = model.effect(X).to_numpy()
    assert np.corrcoef(estimate, tau)[0, 1] > 0.95
    assert np.sqrt(np.mean((estimate - tau) ** 2)) < 0.3


def test_gbm_base_recovers_effect_sign() -> None:
    X, t, y, tau = planted(n=500)
    model = TreatmentEffects("t", "gbm", n_bootstrap=0).fit(X, t, y)
    estimate = model.effect(X).to_numpy()
    assert np.corrcoef(estimate, tau)[0, 1] > 0.8


def test_interval_decides_the_recommendation_and_drivers_name_the_modifier() -> None:
    X, t, y, _ = planted(n=800, seed=1)
    model = TreatmentEffects("t", "linear", n_bootstrap=40, seed=0).fit(X, t, y)
    patients = pd.DataFrame({"x1": [2.0, -2.0, 0.0], "x2": [0.0] * 3, "x3": [0.0] * 3})
    table = model.estimate(patients)
    assert table["recommendation"].tolist() == [CLEAR_BENEFIT, CLEAR_HARM, NO_CLEAR_BENEFIT]
    assert (table["lower"] <= table["benefit"]).all()
    assert (table["benefit"] <= table["upper"]).all()
    middle = table.iloc[2]
    assert middle["lower"] < 0 < middle["upper"]
    assert not bool(middle["clear_benefit"])
    drivers = model.drivers(patients, top=1)
    assert drivers.loc[drivers["patient"] == 0, "feature"].item() == "x1"
    assert drivers.loc[drivers["patient"] == 0, "contribution"].item() > 0
    # a driver is the model's own answer: the estimate minus the estimate with that
    # feature at the cohort's mean, however far out the patient is
    far = patients.iloc[[0]].assign(x1=40.0)
    strongest = model.drivers(far, top=1).iloc[0]
    at_mean = far.assign(x1=X["x1"].mean())
    moved = model.effect(far).iloc[0] - model.effect(at_mean).iloc[0]
    assert strongest["feature"] == "x1" and strongest["contribution"] == pytest.approx(moved)


def test_no_effect_gives_no_clear_benefit_for_most_patients() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    t = rng.integers(0, 2, 400)
    y = (rng.random(400) < 0.3).astype(float)  # binary outcome, no effect at all
    model = TreatmentEffects("t", "linear", n_bootstrap=30).fit(X, t, y)
    assert model.binary_
    share = (model.estimate(X)["recommendation"] == NO_CLEAR_BENEFIT).mean()
    assert share > 0.9


def test_bad_inputs() -> None:
    X, t, y, _ = planted(n=50)
    with pytest.raises(UnknownOptionError, match="learner"):
        TreatmentEffects("q").fit(X, t, y)
    with pytest.raises(InvalidInputError, match="0 \\(control\\) or 1"):
        TreatmentEffects().fit(X, t + 1, y)
    with pytest.raises(InvalidInputError, match="non-numeric"):
        TreatmentEffects().fit(X.assign(s="a"), t, y)
    with pytest.raises(NotFittedError):
        TreatmentEffects().effect(X)
    model = TreatmentEffects("t", "linear", n_bootstrap=0).fit(X, t, y)
    with pytest.raises(InvalidInputError, match="x3"):
        model.estimate(X.drop(columns="x3"))


@pytest.mark.parametrize("learner", ["t", "s", "x"])
def test_potential_outcomes_per_arm_with_intervals(learner: str) -> None:
    X, t, y, _ = planted(n=800, seed=2)
    model = TreatmentEffects(learner, "linear", n_bootstrap=20, seed=0).fit(X, t, y)
    patients = pd.DataFrame({"x1": [1.0, -1.0], "x2": [0.5, 0.5], "x3": [0.0, 0.0]})
    arms = model.potential_outcomes(patients)
    # y = x2 + 2 * x1 * t: control 0.5 for both, treated 2.5 and -1.5
    np.testing.assert_allclose(arms["control"], [0.5, 0.5], atol=0.25)
    np.testing.assert_allclose(arms["treated"], [2.5, -1.5], atol=0.25)
    for arm in ("control", "treated"):
        assert (arms[f"{arm}_lower"] <= arms[arm] + 1e-9).all()
        assert (arms[arm] <= arms[f"{arm}_upper"] + 1e-9).all()
        assert (arms[f"{arm}_upper"] > arms[f"{arm}_lower"]).all()
    if learner != "x":  # the X-learner's effect is not the difference of its arms
        np.testing.assert_allclose(
            arms["treated"] - arms["control"], model.effect(patients), atol=1e-9
        )


def test_no_interval_means_no_clear_call_and_bad_settings_are_refused() -> None:
    """Without bootstrap refits there is no interval, so nothing is a clear benefit or
    harm (the sign of a noisy point estimate was called clear for every patient)."""
    X, t, y, _ = planted(n=300)
    frame = TreatmentEffects("t", "linear", n_bootstrap=0).fit(X, t, y).estimate(X)
    assert frame[["lower", "upper"]].isna().all().all()
    assert set(frame["recommendation"]) == {NO_CLEAR_BENEFIT}
    outcomes = TreatmentEffects("t", "linear", n_bootstrap=0).fit(X, t, y).potential_outcomes(X)
    assert outcomes["treated_lower"].isna().all()
    for bad in ({"n_bootstrap": -3}, {"alpha": 2.0}, {"alpha": 0.0}):
        with pytest.raises(InvalidInputError, match=r"n_bootstrap|alpha"):
            TreatmentEffects("t", "linear", **bad).fit(X, t, y)
