"""Routing as plain functions: is a task done, must it go to a doctor, who asks next.

All functions take the posteriors of a fitted aggregator (``probas_``: tasks x
classes) and, for choosing annotators, worker confusion matrices (``errors[w, k, l]``
= P(worker w answers l | true class k)), obtainable from a fitted model with
`confusion_matrices`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.aggregation.base import Aggregator
from medloop.exceptions import InvalidInputError


class Route(StrEnum):
    """Where a task goes next."""

    DONE = "done"
    CROWD = "crowd"
    DOCTOR = "doctor"


def confidence(probas: pd.DataFrame) -> pd.Series:
    """Posterior probability of each task's most likely class."""
    return probas.max(axis=1).rename("confidence")


def route_tasks(
    probas: pd.DataFrame,
    n_answers: pd.Series | Mapping[Hashable, int],
    *,
    confident: float = 0.95,
    max_answers: int = 7,
    doctor_below: float = 0.0,
) -> pd.Series:
    """Route each task: ``done`` once its top posterior reaches ``confident``;
    ``doctor`` when it is still unsure after ``max_answers`` answers, or below
    ``doctor_below`` however many answers it has (clear conflicts go straight to a
    doctor); else ``crowd`` (ask one more annotator)."""
    if not 0.0 < confident <= 1.0:
        raise InvalidInputError(f"confident must be in (0, 1], got {confident}")
    if max_answers < 1:
        raise InvalidInputError(f"max_answers must be >= 1, got {max_answers}")
    top = confidence(probas)
    given = pd.Series(n_answers, dtype=float)
    absent = top.index.difference(given.index)
    if len(absent):  # counted as 0, an unsure task would go to the crowd for ever
        raise InvalidInputError(
            f"n_answers has no count for {len(absent)} task(s) of probas, e.g. "
            f"{list(absent[:3])}: give a count per task, keyed by task"
        )
    counts = given.reindex(top.index)
    route = np.where(
        top >= confident,
        Route.DONE.value,
        np.where(
            (counts >= max_answers) | (top < doctor_below), Route.DOCTOR.value, Route.CROWD.value
        ),
    )
    return pd.Series(route, index=top.index, name="route")


def information_gain(probas: npt.ArrayLike, errors: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Expected information gain (nats) of one more answer, (tasks x workers).

    The mutual information between a task's true class (current posterior) and the
    answer worker w would give: sum_k,l p_k e_wkl log(e_wkl / sum_j p_j e_wjl).
    Memory grows as tasks x workers x classes^2: pass candidate rows only.
    """
    p = np.asarray(probas, dtype=float)
    e = np.asarray(errors, dtype=float)
    if p.ndim != 2 or e.ndim != 3 or e.shape[1:] != (p.shape[1], p.shape[1]):
        raise InvalidInputError(
            f"need probas (tasks x K) and errors (workers x K x K); got {p.shape} and {e.shape}"
        )
    predicted = np.einsum("tk,wkl->twl", p, e)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(e[None] > 0, e[None] / predicted[:, :, None, :], 1.0)
        terms = p[:, None, :, None] * e[None] * np.log(ratio)
    return np.asarray(np.nan_to_num(terms).sum(axis=(2, 3)), dtype=float)


def next_annotator(
    probas: pd.DataFrame,
    errors: npt.ArrayLike,
    workers: pd.Index,
    *,
    answered: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Best next annotator for each task: most expected information, not asked before.

    ``answered`` (columns ``task, worker``, e.g. the answers so far) excludes workers
    from tasks they already answered. Returns columns ``worker`` and ``gain`` (nats)
    indexed by task; a task every worker has answered gets worker None and gain 0.
    """
    gain = information_gain(probas.to_numpy(dtype=float), errors)
    if gain.shape[1] != len(workers):
        raise InvalidInputError(f"errors cover {gain.shape[1]} workers, got {len(workers)} names")
    if answered is not None and len(answered):
        rows = probas.index.get_indexer(answered["task"])
        cols = pd.Index(workers).get_indexer(answered["worker"])
        seen = (rows >= 0) & (cols >= 0)
        gain[rows[seen], cols[seen]] = -np.inf
    best = gain.argmax(axis=1)
    value = gain[np.arange(len(best)), best]
    names = np.asarray(workers, dtype=object)[best]
    names[~np.isfinite(value)] = None
    return pd.DataFrame(
        {
            "worker": pd.Series(names, index=probas.index, dtype=object),
            "gain": np.where(np.isfinite(value), value, 0.0),
        },
        index=probas.index,
    )


def confusion_matrices(model: Aggregator) -> tuple[pd.Index, npt.NDArray[np.float64]]:
    """Workers and their confusion matrices (workers x K x K) from a fitted model.

    Supports Dawid-Skene (``errors_``), one-coin Dawid-Skene and Wawa (``skills_``: right
    with that probability, else uniform) and MACE (``competence_``, ``spam_``).
    """
    k = len(model.classes_)
    if hasattr(model, "errors_") and hasattr(model, "workers_"):
        return model.workers_, np.asarray(model.errors_, dtype=float)
    if hasattr(model, "competence_") and hasattr(model, "spam_"):
        comp = model.competence_.to_numpy(dtype=float)
        spam = model.spam_.to_numpy(dtype=float)
        matrices = (1 - comp)[:, None, None] * spam[:, None, :] + comp[:, None, None] * np.eye(k)
        return model.competence_.index, matrices
    if hasattr(model, "skills_"):
        skill = np.clip(model.skills_.to_numpy(dtype=float), 0.0, 1.0)
        off = (1 - skill) / max(k - 1, 1)
        matrices = np.where(np.eye(k, dtype=bool)[None], skill[:, None, None], off[:, None, None])
        if k == 1:
            matrices = np.ones((len(skill), 1, 1))
        return model.skills_.index, matrices
    raise InvalidInputError(f"{type(model).__name__} has no per-worker confusion model")
