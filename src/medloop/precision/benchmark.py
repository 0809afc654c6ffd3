"""The precision benchmark on real data that scikit-survival ships.

GBSG2 (German Breast Cancer Study Group 2) on scikit-survival's evaluation-guide split
(`train_test_split(X, y, stratify=y["cens"], random_state=1)`, IBS over the 10th-90th
percentile of follow-up times, censoring distribution from all of y, as the guide does);
ACTG 320 (`load_aids`, treatment `tx`, endpoint AIDS or death): cross-fitted IPW policy
value of the recommendation vs treat-all / treat-none, the Cox hazard ratio of `tx`
(published 0.50, 95% CI 0.33-0.76; Hammer et al., NEJM 1997), and the best-linear-
predictor test of whether the learner's effects differ between patients
(`heterogeneity_test`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from medloop.precision.effects import TreatmentEffects, treat_if_benefit
from medloop.precision.heterogeneity import heterogeneity_test
from medloop.precision.policy import cox_hazard_ratio, cross_fitted_policy_value
from medloop.precision.survival import SurvivalModel, survival_metrics

logger = logging.getLogger(__name__)


def gbsg2_features(X: pd.DataFrame) -> pd.DataFrame:
    """GBSG2 feature table: one-hot categories plus log1p of the skewed lab counts."""
    from sksurv.column import encode_categorical

    out = encode_categorical(X).astype(float)
    for column in ("pnodes", "progrec", "estrec"):
        out[f"log_{column}"] = np.log1p(X[column].astype(float))
    return out


def gbsg2_split() -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The evaluation guide's split: (X_train, X_test, y_train, y_test, y_all)."""
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    features = gbsg2_features(X)
    X_train, X_test, y_train, y_test = train_test_split(
        features, y, stratify=y["cens"], random_state=1
    )
    return X_train, X_test, y_train, y_test, y


def bench_gbsg2(*, method: str = "ensemble", seed: int = 0) -> dict[str, float]:
    """Held-out C-index, mean time-dependent AUC and IBS on GBSG2."""
    X_train, X_test, y_train, y_test, y = gbsg2_split()
    lower, upper = np.percentile(y["time"], [10, 90])
    times = np.arange(lower, upper + 1)
    model = SurvivalModel(method, seed=seed).fit(X_train, y_train)
    surv = model.predict_survival(X_test, times)
    metrics = survival_metrics(y, y_test, surv, model.predict_risk(X_test), times)
    return {f"gbsg2_{k}": v for k, v in metrics.items()}


def actg_data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """ACTG 320 as (features, treatment, time, event); `txgrp` (a copy of tx) is dropped."""
    from sksurv.datasets import load_aids

    X, y = load_aids()
    treatment = X["tx"].astype(int).to_numpy()
    features = X.drop(columns=["tx", "txgrp"])
    features = pd.get_dummies(features, drop_first=True, dtype=float).astype(float)
    return features, treatment, np.asarray(y["time"], float), np.asarray(y["censor"], bool)


def bench_actg(
    *, learner: str = "t", base: str = "gbm", n_splits: int = 5, seed: int = 0
) -> dict[str, float]:
    """Cross-fitted IPW policy values (outcome: free of AIDS/death during follow-up), the
    hazard ratio of treatment, and the heterogeneity test of the learner's effects."""
    X, treatment, time, event = actg_data()
    outcome = 1.0 - event.astype(float)
    report = cross_fitted_policy_value(
        X,
        treatment,
        outcome,
        learner=treat_if_benefit(learner, base, seed=seed),
        propensity=None,
        n_splits=n_splits,
        seed=seed,
    )
    values = report.as_dict("actg_")
    hr = cox_hazard_ratio(time, event, treatment)
    values.update({"actg_hr": hr.hr, "actg_hr_lower": hr.lower, "actg_hr_upper": hr.upper})
    test = heterogeneity_test(
        TreatmentEffects(learner, base), X, treatment, outcome, n_splits=n_splits, seed=seed
    )
    values.update(
        {
            "actg_average_effect": test.average_effect,
            "actg_average_effect_se": test.average_effect_se,
            "actg_heterogeneity_slope": test.slope,
            "actg_heterogeneity_slope_se": test.slope_se,
            "actg_heterogeneity_p": test.p_value,
        }
    )
    return values


def run(*, seed: int = 0) -> dict[str, Any]:
    """The whole benchmark: one flat dict (the `medloop bench precision --json` line)."""
    out: dict[str, Any] = {}
    out.update(bench_gbsg2(seed=seed))
    out.update(bench_actg(seed=seed))
    out["actg_learner"] = "t-learner, gradient boosting"
    return out
