"""Meta-learners recover a planted heterogeneous effect; intervals say "no clear benefit";
on censored follow-up, "event-free by a horizon" with censoring weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.nonparametric import kaplan_meier_estimator

from medloop.exceptions import InvalidInputError, NotFittedError, UnknownOptionError
from medloop.precision import (
    CLEAR_BENEFIT,
    CLEAR_HARM,
    NO_CLEAR_BENEFIT,
    TreatmentEffects,
    event_free_by,
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
    model = TreatmentEffects("t", "linear", n_bootstrap=39).fit(X, t, y)
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
    model = TreatmentEffects(learner, "linear", n_bootstrap=39, seed=0).fit(X, t, y)
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


def censored_trial(
    effect: float, n: int = 600, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Randomised 1:1 trial with follow-up in days: event hazard exp(0.7 * x1) / 1000,
    divided by e^effect for the treated with x1 > 0; the treated drop out much earlier
    (censored uniformly over 100-1500 days, the controls over 1500-2500). Returns X,
    treatment, time, event and each patient's true gain in P(event-free by 500 days)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 2)), columns=["x1", "x2"])
    t = np.arange(n) % 2
    rate = np.exp(0.7 * X["x1"].to_numpy()) / 1000
    treated_rate = rate * np.exp(-effect * (X["x1"].to_numpy() > 0))
    event_time = rng.exponential(1 / np.where(t == 1, treated_rate, rate))
    censor = np.where(t == 1, rng.uniform(100, 1500, n), rng.uniform(1500, 2500, n))
    gain = np.exp(-treated_rate * 500) - np.exp(-rate * 500)
    return X, t, np.minimum(event_time, censor), event_time <= censor, gain


def test_event_free_by_is_kaplan_meier_within_each_arm() -> None:
    """Known answer: each arm's weighted share event-free by the horizon, over all its
    patients, is its Kaplan-Meier survival there (the IPCW identity); patients censored
    before the horizon have no outcome."""
    _, t, time, event, _ = censored_trial(effect=0.0)
    outcome, weight = event_free_by(time, event, t, horizon=500.0)
    unknown = np.isnan(outcome)
    np.testing.assert_array_equal(unknown, ~event & (time < 500))
    np.testing.assert_array_equal(np.isnan(weight), unknown)
    np.testing.assert_array_equal(outcome[~unknown], (time[~unknown] > 500).astype(float))
    assert (weight[~unknown] >= 1).all()
    for arm in (0, 1):
        rows = t == arm
        km_time, km_survival = kaplan_meier_estimator(event[rows], time[rows])
        at = km_survival[np.searchsorted(km_time, 500.0, side="right") - 1]
        assert np.nansum((outcome * weight)[rows]) / rows.sum() == pytest.approx(at, abs=1e-9)
    # the controls drop out after 1500 days only: nobody of them is reweighted by 500
    np.testing.assert_allclose(weight[(t == 0) & ~unknown], 1.0)
    assert unknown[t == 1].sum() > 30 and not unknown[t == 0].any()
    with pytest.raises(
        InvalidInputError,
        match=r"need at least 5 treated and 5 control patients followed up to the horizon "
        r"\(1600\); 0 treated",
    ):
        event_free_by(time, event, t, horizon=1600.0)
    with pytest.raises(InvalidInputError, match="positive"):
        event_free_by(time, event, t, horizon=0.0)


def test_no_effect_with_the_treated_dropping_out_early_is_no_benefit() -> None:
    """The audit's trial: treatment does nothing, but the treated are censored earlier,
    so fewer of their events are seen. "No event during follow-up" called that a clear
    benefit for most patients; event-free by the horizon with censoring weights does not."""
    X, t, time, event, _ = censored_trial(effect=0.0)
    naive = TreatmentEffects("t", "linear", n_bootstrap=39).fit(X, t, 1.0 - event)
    assert (naive.estimate(X)["recommendation"] == CLEAR_BENEFIT).mean() > 0.9  # the bug
    outcome, weight = event_free_by(time, event, t, horizon=500.0)
    known = ~np.isnan(outcome)
    model = TreatmentEffects("t", "linear", n_bootstrap=39).fit(
        X[known], t[known], outcome[known], sample_weight=weight[known]
    )
    table = model.estimate(X)
    assert abs(table["benefit"].mean()) < 0.03
    assert table["lower"].mean() < 0 < table["upper"].mean()
    assert (table["recommendation"] == CLEAR_BENEFIT).mean() < 0.1


@pytest.mark.parametrize("learner", ["t", "s", "x"])
def test_a_planted_effect_is_recovered_despite_the_dropout(learner: str) -> None:
    X, t, time, event, gain = censored_trial(effect=1.5)
    outcome, weight = event_free_by(time, event, t, horizon=500.0)
    known = ~np.isnan(outcome)
    model = TreatmentEffects(learner, "linear", n_bootstrap=39).fit(
        X[known], t[known], outcome[known], sample_weight=weight[known]
    )
    table = model.estimate(X)
    assert np.corrcoef(table["benefit"], gain)[0, 1] > 0.8
    assert table["benefit"].mean() == pytest.approx(gain.mean(), abs=0.03)
    helped = X["x1"].to_numpy() > 1  # gain about +0.3: clear for nearly all of them
    assert (table.loc[helped, "recommendation"] == CLEAR_BENEFIT).mean() > 0.9
    unhelped = X["x1"].to_numpy() < -1  # no gain (a linear model smooths the step at 0)
    assert abs(table.loc[unhelped, "benefit"].mean()) < 0.05
    assert (table.loc[unhelped, "recommendation"] == CLEAR_BENEFIT).mean() < 0.2


@pytest.mark.parametrize("base", ["linear", "gbm"])
@pytest.mark.parametrize("learner", ["t", "s", "x"])
def test_sample_weight_reaches_every_base_model(learner: str, base: str) -> None:
    """A weight of zero is the same fit as leaving the row out (the pipeline's scaler
    and model, the X-learner's effect models), and rows weighted zero count for nothing
    in the bootstrap refits either."""
    X, t, y, _ = planted(n=300)
    half = np.arange(len(X)) % 2 == 0
    for out in (y, (y > 0).astype(float)):
        weighted = (
            TreatmentEffects(learner, base, n_bootstrap=0)
            .fit(X, t, out, sample_weight=half.astype(float))
            .effect(X)
        )
        dropped = TreatmentEffects(learner, base, n_bootstrap=0).fit(X[half], t[half], out[half])
        if base == "linear":
            np.testing.assert_allclose(weighted, dropped.effect(X), atol=1e-9)
        else:  # a tree's split points still see rows weighted zero: close, not equal
            unweighted = TreatmentEffects(learner, base, n_bootstrap=0).fit(X, t, out)
            gap = np.abs(weighted - dropped.effect(X)).mean()
            assert gap < 0.25 * np.abs(unweighted.effect(X) - dropped.effect(X)).mean()
    # the other half gets a huge effect that only the weights hide, in every refit too
    spoiled = np.where(half, y, y + 100.0 * t)
    model = TreatmentEffects(learner, base, n_bootstrap=39, seed=1).fit(
        X, t, spoiled, sample_weight=half.astype(float)
    )
    assert model.estimate(X)[["benefit", "lower", "upper"]].abs().max().max() < 20


def test_bad_sample_weights_are_refused() -> None:
    X, t, y, _ = planted(n=60)
    for bad in (np.ones(10), -np.ones(60), np.full(60, np.nan)):
        with pytest.raises(InvalidInputError, match="sample_weight"):
            TreatmentEffects("t", "linear", n_bootstrap=0).fit(X, t, y, sample_weight=bad)
    few_treated = np.where(t == 1, 0.0, 1.0)
    few_treated[np.flatnonzero(t == 1)[:4]] = 1.0  # 4 treated patients count
    with pytest.raises(InvalidInputError, match="at least 5 treated and 5 control"):
        TreatmentEffects("t", "linear", n_bootstrap=0).fit(X, t, y, sample_weight=few_treated)
