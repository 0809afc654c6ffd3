"""The doctor review queue: which items to look at first, and why.

Each item's score adds two parts, both in [0, 1]:

- disagreement: total-variation distance between the crowd posterior p and the
  model's probabilities q, 0.5 * sum |p - q| (for two classes, |p1 - q1|); 0 when
  the model has no prediction for the item.
- uncertainty: normalised entropy H(p) / log K of the crowd posterior; where the model
  has a prediction, the mean of the crowd's and the model's normalised entropies.

    score = disagreement_weight * disagreement + uncertainty_weight * uncertainty

The queue is sorted by score, highest first, ties broken by item id ascending.

>>> crowd = pd.DataFrame({"a": [0.5, 1.0], "b": [0.5, 0.0]}, index=["x", "y"])
>>> rank_for_review(crowd).index.tolist()
['x', 'y']
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)

#: Normalised entropy at or above which a source is called "unsure" in `reason`
#: (two classes: the top class has probability below about 0.89).
UNSURE_ENTROPY = 0.5

COLUMNS = (
    "crowd_label",
    "crowd_confidence",
    "model_label",
    "model_confidence",
    "disagreement",
    "uncertainty",
    "score",
    "reason",
    "crowd_uncertainty",
    "model_uncertainty",
)


def _check_frame(frame: pd.DataFrame, *, name: str) -> np.ndarray:
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInputError(f"{name} must be a DataFrame (items x classes)")
    if frame.shape[1] < 2:
        raise InvalidInputError(
            f"{name} needs at least two class columns; got {list(frame.columns)}"
        )
    if frame.columns.has_duplicates:
        raise InvalidInputError(f"{name} has duplicate class columns")
    if frame.index.has_duplicates:
        dup = frame.index[frame.index.duplicated()][0]
        raise InvalidInputError(f"{name} has duplicate item ids, e.g. {dup!r}")
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must hold numbers: {exc}") from exc
    if not np.all(np.isfinite(values)):
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    if np.any(values < -1e-9):
        raise InvalidInputError(f"{name} contains negative probabilities")
    sums = values.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-4)
    if bad.size:
        raise InvalidInputError(
            f"{name} rows must sum to 1; item {frame.index[bad[0]]!r} sums to {sums[bad[0]]:.6f}"
        )
    return np.clip(values, 0.0, None)


def _normalised_entropy(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(values > 0, values * np.log(values), 0.0)
    return np.clip(-terms.sum(axis=1) / math.log(values.shape[1]), 0.0, 1.0) + 0.0


def _reason(*, has_model: bool, labels_differ: bool, crowd_unsure: bool, model_unsure: bool) -> str:
    parts = []
    if labels_differ:
        parts.append("crowd and model disagree")
    if crowd_unsure:
        parts.append("crowd unsure")
    if model_unsure:
        parts.append("model unsure")
    if parts:
        return "; ".join(parts)
    return "crowd and model agree" if has_model else "crowd confident; no model prediction"


def model_decisions(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The classes (N,) a model decides on from its probabilities (N, K): p(class 1) at
    least `threshold` for a binary model (the cut it was tuned to on validation), else
    the argmax; as `medloop predict` decides."""
    proba = np.asarray(probabilities, dtype=float)
    if proba.shape[1] == 2:
        return (proba[:, 1] >= threshold).astype(np.intp)
    return proba.argmax(axis=1)


def rank_for_review(
    crowd_proba: pd.DataFrame,
    model_proba: pd.DataFrame | None = None,
    *,
    disagreement_weight: float = 1.0,
    uncertainty_weight: float = 1.0,
    model_threshold: float = 0.5,
) -> pd.DataFrame:
    """Rank crowd-labelled items for doctor review (see the module docstring for the score).

    `crowd_proba` and `model_proba` are items x classes with the same class columns
    (in any order); the model may lack some items (or be None); model rows for items
    the crowd has not labelled are ignored. A binary model decides class 1 (the second
    column) where its probability is at least `model_threshold`, the cut it was tuned
    to on validation; `model_label` is that decision and `model_confidence` the
    probability of it. Returns one row per crowd item with
    columns crowd_label, crowd_confidence, model_label, model_confidence (None / NaN
    without a model prediction), disagreement, uncertainty, score, reason,
    crowd_uncertainty, model_uncertainty.
    """
    for weight_name, weight in (
        ("disagreement_weight", disagreement_weight),
        ("uncertainty_weight", uncertainty_weight),
    ):
        if not (math.isfinite(weight) and weight >= 0):
            raise InvalidInputError(f"{weight_name} must be finite and >= 0; got {weight}")
    if not 0.0 < model_threshold < 1.0:
        raise InvalidInputError(f"model_threshold must be in (0, 1); got {model_threshold}")
    crowd = _check_frame(crowd_proba, name="crowd_proba")
    classes = list(crowd_proba.columns)
    items = crowd_proba.index
    n = len(items)

    model = np.full_like(crowd, np.nan)
    has_model = np.zeros(n, dtype=bool)
    if model_proba is not None:
        _check_frame(model_proba, name="model_proba")
        if set(model_proba.columns) != set(classes):
            raise InvalidInputError(
                f"model_proba columns {list(model_proba.columns)} differ from crowd_proba "
                f"columns {classes}"
            )
        aligned = model_proba[classes].reindex(items)
        has_model = aligned.notna().all(axis=1).to_numpy()
        model = aligned.to_numpy(dtype=np.float64)
        extra = len(model_proba.index.difference(items))
        if extra:
            logger.debug("ignoring %d model rows without crowd labels", extra)

    crowd_idx = crowd.argmax(axis=1)
    crowd_unc = _normalised_entropy(crowd)
    model_filled = np.where(has_model[:, None], model, crowd)
    model_idx = model_decisions(model_filled, model_threshold)
    model_unc = np.where(has_model, _normalised_entropy(model_filled), np.nan)
    disagreement = np.where(has_model, 0.5 * np.abs(crowd - model_filled).sum(axis=1), 0.0)
    uncertainty = np.where(has_model, (crowd_unc + np.nan_to_num(model_unc)) / 2.0, crowd_unc)
    score = disagreement_weight * disagreement + uncertainty_weight * uncertainty

    reasons = [
        _reason(
            has_model=bool(has_model[i]),
            labels_differ=bool(has_model[i] and crowd_idx[i] != model_idx[i]),
            crowd_unsure=bool(crowd_unc[i] >= UNSURE_ENTROPY),
            model_unsure=bool(has_model[i] and model_unc[i] >= UNSURE_ENTROPY),
        )
        for i in range(n)
    ]
    result = pd.DataFrame(
        {
            "crowd_label": pd.Series([classes[j] for j in crowd_idx], index=items, dtype=object),
            "crowd_confidence": crowd.max(axis=1),
            "model_label": pd.Series(
                [classes[j] if has_model[i] else None for i, j in enumerate(model_idx)],
                index=items,
                dtype=object,
            ),
            "model_confidence": np.where(has_model, model_filled[np.arange(n), model_idx], np.nan),
            "disagreement": disagreement,
            "uncertainty": uncertainty,
            "score": score,
            "reason": pd.Series(reasons, index=items, dtype=object),
            "crowd_uncertainty": crowd_unc,
            "model_uncertainty": model_unc,
        },
        index=items,
    )
    # Ties: sort by item id first, then stably by score rounded past float noise.
    try:
        result = result.sort_index(kind="mergesort")
    except TypeError:  # mixed id types: order them by their text
        result = result.sort_index(kind="mergesort", key=lambda index: index.astype(str))
    key = -result["score"].round(12)
    order = np.argsort(key.to_numpy(), kind="stable")
    return result.iloc[order]
