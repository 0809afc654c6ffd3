"""Precision medicine: patient records, features, risk and survival models, treatment
effects and their off-policy evaluation. Pure library code over DataFrames and arrays.

Modules: `records` (tabular + FHIR import, free-text scrubbing), `features` (documented
feature table), `genes` (gene-expression features), `risk` (calibrated classifiers),
`survival` (scikit-survival models and metrics), `boosting` (the gradient-boosted Cox
model with an O(n log n) loss), `intervals` (bootstrap percentile intervals and the
refits they need), `samplesize` (events, and events per variable), `effects`
(meta-learners with intervals, censoring weights), `heterogeneity` (does the effect
differ between patients at all?), `drivers` (what moves one patient's estimate), `policy`
(IPW policy value, Cox hazard ratio), `benchmark` (GBSG2 and ACTG 320).
"""

from medloop.precision.boosting import CoxBoost
from medloop.precision.drivers import LinearSurrogate
from medloop.precision.effects import (
    CLEAR_BENEFIT,
    CLEAR_HARM,
    NO_CLEAR_BENEFIT,
    TreatmentEffects,
    event_free_by,
    treat_if_benefit,
)
from medloop.precision.features import Feature, FeatureTable, convert_unit, observations_to_wide
from medloop.precision.genes import GeneExpression, read_expression
from medloop.precision.heterogeneity import Heterogeneity, heterogeneity_test
from medloop.precision.policy import (
    Estimate,
    HazardRatio,
    PolicyReport,
    cox_hazard_ratio,
    cross_fitted_policy_value,
    ipw_policy_value,
)
from medloop.precision.records import (
    CsvDialect,
    PatientRecords,
    read_fhir_bundle,
    read_ids,
    read_table,
    safe_harbor_ages,
    scrub_identifiers,
)
from medloop.precision.risk import (
    RiskClassifier,
    bootstrap_risk_interval,
    classification_metrics,
    cross_validate_risk,
)
from medloop.precision.survival import (
    SPREAD_SUFFIX,
    SurvivalModel,
    bootstrap_band,
    calibration_plot,
    calibration_table,
    cross_validate_survival,
    followup_horizon,
    survival_metrics,
    survival_plot,
    survival_target,
)

__all__ = [
    "CLEAR_BENEFIT",
    "CLEAR_HARM",
    "NO_CLEAR_BENEFIT",
    "SPREAD_SUFFIX",
    "CoxBoost",
    "CsvDialect",
    "Estimate",
    "Feature",
    "FeatureTable",
    "GeneExpression",
    "HazardRatio",
    "Heterogeneity",
    "LinearSurrogate",
    "PatientRecords",
    "PolicyReport",
    "RiskClassifier",
    "SurvivalModel",
    "TreatmentEffects",
    "bootstrap_band",
    "bootstrap_risk_interval",
    "calibration_plot",
    "calibration_table",
    "classification_metrics",
    "convert_unit",
    "cox_hazard_ratio",
    "cross_fitted_policy_value",
    "cross_validate_risk",
    "cross_validate_survival",
    "event_free_by",
    "followup_horizon",
    "heterogeneity_test",
    "ipw_policy_value",
    "observations_to_wide",
    "read_expression",
    "read_fhir_bundle",
    "read_ids",
    "read_table",
    "safe_harbor_ages",
    "scrub_identifiers",
    "survival_metrics",
    "survival_plot",
    "survival_target",
    "treat_if_benefit",
]
