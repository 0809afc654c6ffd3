"""Cost-aware choice of who labels next: more lay answers, or a doctor.

Every candidate item has a belief ``p`` about its true class (the crowd posterior, with
the model's probabilities folded in by `combine_beliefs` where there is a prediction)
and a label the project would keep for it now: the most likely class under the crowd
posterior ``q`` alone (the consensus; ``q = p`` when no model is involved). A request
is worth what it is expected to remove from the label's risk, the probability under
``p`` that the label is wrong, ``r = 1 - p[argmax q]``. After ``n`` independent lay
answers with confusion matrix ``E`` (rows: true class) the label becomes the argmax of
``q`` updated by the answers, so

    E[r] = 1 - sum_c (p * L_c)[argmax (q * L_c)],   L_c[k] = Mult(c | n, E[k]),

summed over the count vectors ``c`` of the ``n`` answers. A doctor's answer becomes the
final label, so the risk after it is her error rate. Keeping ``p`` and ``q`` apart
matters once a model is folded in: an item whose single lay answer the model
contradicts has a confident-looking ``p`` but a label that is probably wrong.

`plan_labelling` gives each item at most one request (a doctor, or 1 to
``max_lay_answers`` lay answers), spending the budget where it removes most expected
risk per unit of cost: first the best request per unit for each item, then, with money
left, upgrades to dearer requests that remove more (`_spend`). Looking ahead over
several lay answers matters: with ``p = (0.9, 0.1)`` one answer from a 70%-accurate
annotator can never change the label (gain 0), three can. The plan is greedy and
one-shot; re-plan after the answers arrive (an item still unsure after its lay answers
then goes to a doctor when that is worth her price). In the example, the open item is
worth one lay answer first and a doctor once the money allows; the nearly sure one (5%
risk) comes last.

>>> import pandas as pd
>>> belief = pd.DataFrame([[0.5, 0.5], [0.95, 0.05]], index=["open", "sure"])
>>> lay = [[0.7, 0.3], [0.3, 0.7]]
>>> def plan(budget):
...     return plan_labelling(belief, lay_confusion=lay, doctor_accuracy=0.97,
...                           lay_cost=1.0, doctor_cost=4.0, budget=budget)
>>> plan(1.0)[["action", "answers", "cost"]]
     action  answers  cost
open  crowd        1   1.0
>>> plan(4.0)[["action", "answers", "cost"]]
      action  answers  cost
open  doctor        1   4.0
"""

from __future__ import annotations

import itertools
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import gammaln

from medloop.aggregation.base import check_non_negative, check_positive_int
from medloop.exceptions import InvalidInputError

#: Cells (items x outcomes x classes) evaluated at once; bounds memory for many classes.
_CHUNK_CELLS = 2_000_000


class Action(StrEnum):
    """Who is asked about an item."""

    CROWD = "crowd"
    DOCTOR = "doctor"


def _check_probas(probas: npt.ArrayLike) -> npt.NDArray[np.float64]:
    p = np.asarray(probas, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise InvalidInputError(f"probas must be items x classes (>= 2); got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < -1e-9):
        raise InvalidInputError("probas must hold finite, non-negative probabilities")
    if p.size and np.any(np.abs(p.sum(axis=1) - 1.0) > 1e-4):
        raise InvalidInputError("each row of probas must sum to 1")
    return np.clip(p, 0.0, None)


def _check_confusion(confusion: npt.ArrayLike, k: int, *, name: str) -> npt.NDArray[np.float64]:
    e = np.asarray(confusion, dtype=float)
    if e.shape != (k, k):
        raise InvalidInputError(f"{name} must be {k} x {k} (rows: true class); got {e.shape}")
    if not np.all(np.isfinite(e)) or np.any(e < 0) or np.any(np.abs(e.sum(axis=1) - 1) > 1e-6):
        raise InvalidInputError(f"{name} rows must be probability distributions")
    return e


def symmetric_confusion(accuracy: float, n_classes: int) -> npt.NDArray[np.float64]:
    """Right with probability ``accuracy``, else any other class alike.

    >>> symmetric_confusion(0.9, 2).round(6).tolist()
    [[0.9, 0.1], [0.1, 0.9]]
    """
    if not 0.0 <= accuracy <= 1.0:
        raise InvalidInputError(f"accuracy must lie in [0, 1], got {accuracy}")
    if n_classes < 2:
        raise InvalidInputError(f"n_classes must be >= 2, got {n_classes}")
    off = (1.0 - accuracy) / (n_classes - 1)
    return np.where(np.eye(n_classes, dtype=bool), accuracy, off)


def mean_confusion(
    errors: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> npt.NDArray[np.float64]:
    """A typical annotator: the (weighted) mean of per-worker confusion matrices (W x K x K).

    Weigh by each worker's number of answers to describe the answer a new request is
    likely to get.
    """
    e = np.asarray(errors, dtype=float)
    if e.ndim != 3 or e.shape[1] != e.shape[2] or e.shape[0] == 0:
        raise InvalidInputError(f"errors must be workers x K x K; got shape {e.shape}")
    w = np.ones(e.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (e.shape[0],) or np.any(w < 0) or not w.sum() > 0:
        raise InvalidInputError("weights must be one non-negative number per worker, not all 0")
    mean = np.einsum("w,wkl->kl", w / w.sum(), e)
    return np.asarray(mean / mean.sum(axis=1, keepdims=True), dtype=float)


def _outcomes(n_answers: int, k: int) -> npt.NDArray[np.intp]:
    """Every count vector of ``n_answers`` answers over ``k`` classes (outcomes x K)."""
    rows = [
        np.bincount(np.asarray(combo, dtype=np.intp), minlength=k)
        for combo in itertools.combinations_with_replacement(range(k), n_answers)
    ]
    return np.asarray(rows, dtype=np.intp)


def expected_risk(
    probas: npt.ArrayLike,
    confusion: npt.ArrayLike,
    n_answers: int,
    *,
    label_probas: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float64]:
    """Expected risk of each item's label after ``n_answers`` answers with this confusion.

    ``probas`` is the belief about the truth, ``label_probas`` the posterior whose argmax
    is kept as the label (default: ``probas``, the Bayes decision).

    >>> round(float(expected_risk([[0.5, 0.5]], [[1.0, 0.0], [0.0, 1.0]], 1)[0]), 6)
    0.0
    >>> round(float(expected_risk([[0.9, 0.1]], [[0.7, 0.3], [0.3, 0.7]], 1)[0]), 6)
    0.1
    """
    p = _check_probas(probas)
    q = p if label_probas is None else _check_probas(label_probas)
    if q.shape != p.shape:
        raise InvalidInputError(f"label_probas must be shaped like probas {p.shape}; got {q.shape}")
    e = _check_confusion(confusion, p.shape[1], name="confusion")
    return _expected_risk(p, q, e, check_positive_int("n_answers", n_answers, minimum=0))


def _expected_risk(
    p: npt.NDArray[np.float64], q: npt.NDArray[np.float64], e: npt.NDArray[np.float64], n: int
) -> npt.NDArray[np.float64]:
    """`expected_risk` on checked arrays."""
    if n == 0:
        return np.clip(1.0 - p[np.arange(len(p)), q.argmax(axis=1)], 0.0, 1.0)
    counts = _outcomes(n, p.shape[1])
    # log Mult(c | n, E[k]) for every outcome c and class k (outcomes x K); 0 * log 0 = 0
    log_coef = gammaln(n + 1) - gammaln(counts + 1).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_e = np.log(e)
        terms = np.where(counts[:, None, :] > 0, counts[:, None, :] * log_e[None], 0.0)
    likelihood = np.exp(log_coef[:, None] + terms.sum(axis=2))
    kept = np.empty(len(p))
    step = max(1, _CHUNK_CELLS // max(1, likelihood.size))
    for start in range(0, len(p), step):
        joint = p[start : start + step, None, :] * likelihood[None]  # items x outcomes x K
        label = (q[start : start + step, None, :] * likelihood[None]).argmax(axis=2)
        kept[start : start + step] = np.take_along_axis(joint, label[..., None], 2).sum(axis=(1, 2))
    return np.clip(1.0 - kept, 0.0, 1.0)


def combine_beliefs(
    crowd: pd.DataFrame, model: pd.DataFrame | None, *, prior: npt.ArrayLike
) -> pd.DataFrame:
    """One belief per item from the crowd posterior and the model's probabilities.

    Where both exist they are independent evidence over the class prior the crowd
    posterior was computed with: ``p ∝ crowd * model / prior``. Items only the crowd has
    seen keep the crowd posterior; items only the model has seen take the model's
    probabilities. Both frames are items x classes (same columns).
    """
    columns = list(crowd.columns)
    if model is None or model.empty:
        return crowd.astype(float)
    if set(model.columns) != set(columns):
        raise InvalidInputError(
            f"model columns {list(model.columns)} differ from crowd columns {columns}"
        )
    model = model[columns].astype(float)
    base = np.asarray(prior, dtype=float)
    if base.shape != (len(columns),) or not np.all(base > 0):
        raise InvalidInputError("prior must be one positive probability per class")
    both = crowd.index.intersection(model.index)
    joint = crowd.loc[both].to_numpy(dtype=float) * model.loc[both].to_numpy(dtype=float) / base
    sums = joint.sum(axis=1, keepdims=True)
    joint = np.divide(
        joint, sums, out=crowd.loc[both].to_numpy(dtype=float, copy=True), where=sums > 0
    )
    return pd.concat(
        [
            pd.DataFrame(joint, index=both, columns=columns),
            crowd.loc[crowd.index.difference(both)].astype(float),
            model.loc[model.index.difference(crowd.index)],
        ]
    )


def plan_labelling(
    probas: pd.DataFrame,
    *,
    label_probas: pd.DataFrame | None = None,
    lay_confusion: npt.ArrayLike,
    doctor_accuracy: float = 0.97,
    lay_cost: float = 1.0,
    doctor_cost: float = 20.0,
    budget: float,
    max_lay_answers: int = 5,
) -> pd.DataFrame:
    """Which items to send to lay annotators (and how many answers) or to a doctor.

    ``probas``: the current belief, items x classes; ``label_probas``: the posterior
    whose argmax is each item's label (same items and classes; default ``probas``; see
    the module docstring). ``lay_confusion``: a typical lay annotator's confusion matrix
    (see `mean_confusion`); the doctor is right with ``doctor_accuracy``. Costs are in
    any one unit (money, minutes); the plan spends at most ``budget`` of it. Returns the
    chosen items, highest gain per cost first (ties in the given order), with columns
    action (``crowd`` or ``doctor``), answers, cost, risk (now), expected_risk (after),
    gain (risk removed) and gain_per_cost. Items no request would improve, or that the
    budget does not reach, are left out.
    """
    for name, value in (("lay_cost", lay_cost), ("doctor_cost", doctor_cost)):
        if check_non_negative(name, value) == 0:
            raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    budget = check_non_negative("budget", budget)
    max_lay_answers = check_positive_int("max_lay_answers", max_lay_answers, minimum=0)
    if not 0.0 <= doctor_accuracy <= 1.0:
        raise InvalidInputError(f"doctor_accuracy must lie in [0, 1], got {doctor_accuracy}")
    if probas.index.has_duplicates:
        raise InvalidInputError("probas has duplicate item ids")
    p = _check_probas(probas)
    q = p
    if label_probas is not None:
        if not (label_probas.index.equals(probas.index) and label_probas.shape == probas.shape):
            raise InvalidInputError("label_probas must cover the same items as probas")
        q = _check_probas(label_probas[list(probas.columns)])
    lay = _check_confusion(lay_confusion, p.shape[1], name="lay_confusion")

    risk = _expected_risk(p, q, lay, 0)
    # Options: column 0 is the doctor (her answer is the final label, right with her
    # accuracy), column n is n lay answers.
    after = np.empty((len(p), max_lay_answers + 1))
    after[:, 0] = 1.0 - doctor_accuracy
    for n in range(1, max_lay_answers + 1):
        after[:, n] = _expected_risk(p, q, lay, n)
    costs = np.r_[doctor_cost, lay_cost * np.arange(1, max_lay_answers + 1)]
    gains = np.clip(risk[:, None] - after, 0.0, None)
    choice = _spend(gains, costs, budget)
    chosen = np.flatnonzero(choice >= 0)
    option = choice[chosen]
    plan = pd.DataFrame(
        {
            "action": np.where(option == 0, Action.DOCTOR.value, Action.CROWD.value),
            "answers": np.where(option == 0, 1, option),
            "cost": costs[option],
            "risk": risk[chosen],
            "expected_risk": after[chosen, option],
            "gain": gains[chosen, option],
            "gain_per_cost": gains[chosen, option] / costs[option],
        },
        index=probas.index[chosen],
    )
    return plan.iloc[np.argsort(-plan["gain_per_cost"].round(12).to_numpy(), kind="stable")]


def _spend(
    gains: npt.NDArray[np.float64], costs: npt.NDArray[np.float64], budget: float
) -> npt.NDArray[np.intp]:
    """Greedy for the multiple-choice knapsack: at most one option per item.

    Each item's options (plus asking nothing) are reduced to their upper convex hull in
    (cost, gain); walking up a hull buys the next option for its extra cost. Steps of
    every item are taken in order of extra gain per extra cost while they fit (Sinha &
    Zoltners, 1979): money left after the best first steps upgrades items to dearer,
    better options (a doctor instead of one lay answer) instead of lying idle. An item
    whose next step no longer fits stops there. Returns each item's option (-1: none).
    """
    steps: list[tuple[float, int, int, float]] = []  # (gain per cost, item, option, cost)
    by_cost = np.argsort(costs, kind="stable")
    for item, row in enumerate(gains):
        hull: list[tuple[float, float, int]] = [(0.0, 0.0, -1)]
        for option in by_cost:
            cost, gain = float(costs[option]), float(row[option])
            if gain <= hull[-1][1] + 1e-12:
                continue  # costs as much or more and gains no more
            while len(hull) >= 2:
                (c1, g1, _), (c2, g2, _) = hull[-2], hull[-1]
                if (g2 - g1) * (cost - c1) > (gain - g1) * (c2 - c1):
                    break
                hull.pop()  # on or under the line to the new option: never worth stopping at
            hull.append((cost, gain, int(option)))
        for (c1, g1, _), (c2, g2, option) in itertools.pairwise(hull):
            steps.append(((g2 - g1) / (c2 - c1), item, option, c2 - c1))
    # Best steps first; ties keep items in their given order, an item's steps in hull order.
    steps.sort(key=lambda step: -round(step[0], 12))
    choice = np.full(len(gains), -1, dtype=np.intp)
    stopped = np.zeros(len(gains), dtype=bool)
    left = budget + 1e-9
    for _, item, option, extra in steps:
        if stopped[item]:
            continue
        if extra > left:
            stopped[item] = True
            continue
        left -= extra
        choice[item] = option
    return choice
