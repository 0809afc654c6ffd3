"""Survival models rank a planted risk correctly; metrics and calibration behave."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.ensemble import RandomSurvivalForest

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.precision import (
    SurvivalModel,
    bootstrap_band,
    calibration_plot,
    calibration_table,
    cross_validate_survival,
    survival_metrics,
    survival_plot,
    survival_target,
)
from medloop.precision.survival import FOREST_TIMES, forest_target


def planted(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 3)), columns=["risk", "noise1", "noise2"])
    time = rng.exponential(scale=np.exp(-X["risk"].to_numpy()))
    censor = rng.exponential(scale=2.0, size=n)
    return X, survival_target(np.minimum(time, censor), time <= censor)


@pytest.mark.parametrize("method", ["cox", "rsf", "gbsa"])
def test_models_rank_a_planted_risk(method: str) -> None:
    X, y = planted(300, 0)
    X_test, y_test = planted(200, 1)
    model = SurvivalModel(method, n_estimators=50).fit(X, y)
    times = np.quantile(y_test["time"], [0.2, 0.4, 0.6])
    surv = model.predict_survival(X_test, times)
    assert surv.shape == (200, 3)
    assert ((surv.to_numpy() >= 0) & (surv.to_numpy() <= 1)).all()
    assert (np.diff(surv.to_numpy(), axis=1) <= 1e-9).all()  # survival never increases
    metrics = survival_metrics(y, y_test, surv, model.predict_risk(X_test), times)
    assert metrics["cindex"] > 0.7
    assert metrics["mean_auc"] > 0.7
    assert 0 < metrics["ibs"] < 0.25


def test_calibration_table_and_plot(tmp_path: Path) -> None:
    X, y = planted(300, 2)
    model = SurvivalModel("cox").fit(X, y)
    horizon = float(np.median(y["time"]))
    pred = model.predict_survival(X, [horizon]).iloc[:, 0]
    cal = calibration_table(y, pred, horizon=horizon, groups=4)
    assert cal["n"].sum() == 300
    assert cal["predicted"].is_monotonic_increasing
    assert (abs(cal["predicted"] - cal["observed"]) < 0.15).all()  # a correct model
    png = calibration_plot(cal, tmp_path / "cal.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_errors() -> None:
    X, y = planted(50, 3)
    with pytest.raises(UnknownOptionError, match="deepsurv"):
        SurvivalModel("deepsurv").fit(X, y)
    with pytest.raises(InvalidInputError, match="missing values"):
        SurvivalModel("cox").fit(X.mask(X > 1.5), y)
    with pytest.raises(InvalidInputError, match="event must be 0/1"):
        survival_target([1.0, 2.0], [0, 2])


def test_bootstrap_band_covers_the_curve_and_the_plot_draws_it() -> None:
    X, y = planted(200, 3)
    model = SurvivalModel("cox").fit(X, y)
    times = np.quantile(y["time"], [0.1, 0.5, 0.9])
    patients = pd.DataFrame({"risk": [-2.0, 0.0, 2.0], "noise1": 0.0, "noise2": 0.0})
    point = model.predict_survival(patients, times).to_numpy()
    lower, upper = bootstrap_band(X, y, patients, times, method="cox", n_bootstrap=39, seed=1)
    assert list(lower.index) == [0, 1, 2] and list(upper.columns) == list(times)
    lower, upper = lower.to_numpy(), upper.to_numpy()
    assert (lower <= point + 0.02).all() and (point <= upper + 0.02).all()
    assert (upper - lower > 0).all()  # resampling moves the curves
    assert (np.diff(lower, axis=1) <= 1e-9).all()  # a band of survival curves
    with pytest.raises(InvalidInputError, match="n_bootstrap"):
        bootstrap_band(X, y, patients, times, n_bootstrap=1)
    png = survival_plot(times, point[0], lower=lower[0], upper=upper[0], horizon=times[1])
    assert png.startswith(b"\x89PNG")
    with pytest.raises(InvalidInputError):
        survival_plot(times, point[0][:2])


def test_cross_validation_scores_every_patient_out_of_fold() -> None:
    X, y = planted(300, 0)
    folds: list[int] = []
    horizon = float(np.median(y["time"]))
    result = cross_validate_survival(
        SurvivalModel("cox"), X, y, horizon=horizon, progress=lambda done, _: folds.append(done)
    )
    assert folds == [1, 2, 3, 4, 5]
    assert result["cindex"] > 0.7 and 0 < result["cindex_sd"] < 0.1  # the planted risk
    assert 0 < result["ibs"] < 0.25 and result["mean_auc"] > 0.7
    table = result["calibration"]
    assert table["n"].tolist() == [60] * 5  # every patient once, in fifths of predicted risk
    assert table["predicted"].is_monotonic_increasing  # groups of rising P(event-free)
    # a calibrated model: each group's predicted survival near what Kaplan-Meier observed
    assert (table["predicted"] - table["observed"]).abs().max() < 0.15
    few = survival_target(y["time"], np.r_[np.ones(3), np.zeros(297)].astype(bool))
    with pytest.raises(InvalidInputError, match="5\\+ patients with and without the event"):
        cross_validate_survival(SurvivalModel("cox"), X, few, horizon=horizon)


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_cross_validation_copes_with_a_small_cohort(seed: int) -> None:
    """Twenty patients: some folds' follow-up is too short to score over time, or holds
    no pair to compare (these seeds raised scikit-survival's errors: a time past the
    training follow-up, no comparable pairs, a censoring distribution at zero); such a
    fold counts only for what it can score."""
    X, y = planted(20, seed)
    result = cross_validate_survival(
        SurvivalModel("cox"), X, y, horizon=float(np.median(y["time"]))
    )
    assert all(np.isfinite(result[k]) for k in ("cindex", "mean_auc", "ibs"))
    assert result["calibration"]["n"].sum() == 20


def test_a_bootstrap_band_needs_two_patients_with_the_event_and_never_hangs() -> None:
    """Every resample redrawn until it had two events: with none in the cohort the loop
    never ended, with one it counted the same patient drawn twice."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(60, 10, 40)})
    times = rng.uniform(1, 100, 40)
    for events in (0, 1):
        y = survival_target(times, [1] * events + [0] * (40 - events))
        with pytest.raises(InvalidInputError, match="at least 2 patients with the event"):
            bootstrap_band(X, y, X.head(2), [10.0], method="cox", n_bootstrap=39)


def test_a_target_with_its_fields_the_other_way_round_is_refused() -> None:
    """(time, event) read by position gave every patient an observed survival of 0."""
    flipped = np.zeros(3, dtype=[("time", float), ("event", bool)])
    with pytest.raises(InvalidInputError, match=r"fields \(event: bool, time: number\)"):
        SurvivalModel("cox").fit(pd.DataFrame({"a": [1.0, 2.0, 3.0]}), flipped)
    with pytest.raises(InvalidInputError, match="finite"):
        survival_target([1.0, np.inf], [1, 0])


def test_the_forest_learns_on_event_times_only_and_the_same_forest() -> None:
    X, y = planted(300, 3)
    grid = forest_target(y)
    assert len(np.unique(grid["time"])) <= len(np.unique(y["time"][y["event"]])) + 1
    settings = {"n_estimators": 30, "min_samples_leaf": 10, "random_state": 0}
    exact = RandomSurvivalForest(**settings).fit(X, y)
    gridded = RandomSurvivalForest(**settings).fit(X, grid)
    times = np.quantile(y["time"][y["event"]], [0.1, 0.5, 0.9])
    curves = [
        np.vstack([fn(times) for fn in forest.predict_survival_function(X.head(20))])
        for forest in (exact, gridded)
    ]
    np.testing.assert_array_equal(curves[0], curves[1])  # censoring moved, nothing changed


def test_the_forest_time_grid_is_capped_for_large_cohorts() -> None:
    X, y = planted(1200, 4)  # about 800 distinct event times
    assert len(np.unique(y["time"][y["event"]])) > FOREST_TIMES
    model = SurvivalModel("rsf", n_estimators=5).fit(X, y)
    assert len(model.models_["rsf"].unique_times_) <= FOREST_TIMES + 1
    grid = forest_target(y)
    assert (grid["time"][y["event"]] >= y["time"][y["event"]]).all()  # events: interval end
    assert (grid["time"][~y["event"]] <= y["time"][~y["event"]]).all()  # censoring: start
    surv = model.predict_survival(X.head(5), np.quantile(y["time"], [0.2, 0.5]))
    assert np.isfinite(surv.to_numpy()).all()
