"""The answers contract and the base class every aggregator shares.

Answers are a long DataFrame with one row per answer: columns ``task``, ``worker``,
``label`` and optionally ``weight`` (non-negative, default 1). Labels may be any
hashable values (ints or strings). An aggregator turns answers into a consensus
``pd.Series`` indexed by task and a probability DataFrame (tasks x classes).

Tasks whose label is already known (gold questions, doctor decisions) may be passed as
``known``: a ``pd.Series`` task -> label. They come out exactly as given, with
probability 1, even when nobody answered them.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from medloop.exceptions import InvalidInputError, NotFittedError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS: tuple[str, ...] = ("task", "worker", "label")

#: Probabilities closer than this to the row maximum count as a tie.
TIE_TOLERANCE = 1e-12


def validate_answers(answers: pd.DataFrame) -> pd.DataFrame:
    """Check the answers contract and return a clean copy with a fresh index.

    Raises `InvalidInputError` for a non-DataFrame, missing columns, an empty frame,
    missing tasks, workers or labels, and negative, missing or infinite weights.
    Extra columns (e.g. ``source``) are kept.

    >>> validate_answers(pd.DataFrame({"task": [1], "worker": ["a"], "label": [0]}))
       task worker  label
    0     1      a      0
    """
    if not isinstance(answers, pd.DataFrame):
        raise InvalidInputError(f"answers must be a pandas DataFrame, got {type(answers).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in answers.columns]
    if missing:
        raise InvalidInputError(
            f"answers are missing column(s) {missing}; "
            f"expected {list(REQUIRED_COLUMNS)} (plus optional 'weight'), "
            f"got {list(map(str, answers.columns))}"
        )
    if len(answers) == 0:
        raise InvalidInputError("answers are empty: at least one answer is needed")
    for column in REQUIRED_COLUMNS:
        n_missing = int(answers[column].isna().sum())
        if n_missing:
            raise InvalidInputError(
                f"answers have {n_missing} missing value(s) (NaN/None) in column {column!r}"
            )
    clean = answers.reset_index(drop=True).copy()
    if "weight" in clean.columns:
        try:
            weight = pd.to_numeric(clean["weight"], errors="raise").astype(float)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"answer weights must be numeric: {exc}") from exc
        values = weight.to_numpy()
        if not np.isfinite(values).all():
            raise InvalidInputError("answer weights must be finite numbers (no NaN or inf)")
        if (values < 0).any():
            raise InvalidInputError(
                f"answer weights must be non-negative; found {int((values < 0).sum())} negative"
            )
        clean["weight"] = weight
    return clean


def validate_known(known: pd.Series | Mapping[Any, Any] | None) -> pd.Series | None:
    """Check known labels (task -> label) and return them as a Series, or None."""
    if known is None:
        return None
    if isinstance(known, pd.Series):
        series = known
    elif isinstance(known, Mapping):
        series = pd.Series(dict(known), dtype=object)
    else:
        raise InvalidInputError(
            f"known must be a pandas Series (task -> label), got {type(known).__name__}"
        )
    return _check_known(series)


def _check_known(known: pd.Series) -> pd.Series:
    if known.isna().any():
        raise InvalidInputError(
            f"known labels have {int(known.isna().sum())} missing value(s) (NaN/None)"
        )
    if known.index.hasnans:
        raise InvalidInputError("known labels have missing task ids (NaN/None) in the index")
    if known.index.has_duplicates:
        dupes = known.index[known.index.duplicated()].unique().tolist()[:5]
        raise InvalidInputError(f"known labels name some tasks more than once, e.g. {dupes}")
    return known


def sorted_unique(values: Iterable[Hashable]) -> list[Hashable]:
    """Unique values in sorted order; mixed, unorderable types sort by (type, str)."""
    unique = list(dict.fromkeys(_to_python(v) for v in values))
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:
        return sorted(unique, key=lambda v: (type(v).__name__, str(v)))


def _to_python(value: Hashable) -> Hashable:
    """Turn numpy scalars into Python scalars so 1 and np.int64(1) are one class."""
    if isinstance(value, np.generic):
        item: Hashable = value.item()
        return item
    return value


def resolve_classes(
    labels: Iterable[Hashable],
    *,
    known: pd.Series | None = None,
    classes: Sequence[Hashable] | None = None,
) -> list[Hashable]:
    """Sorted union of observed labels, known labels and user-declared classes."""
    pool: list[Hashable] = list(labels)
    if known is not None:
        pool.extend(known.tolist())
    if classes is not None:
        if isinstance(classes, str | bytes):
            raise InvalidInputError("classes must be a sequence of labels, not a string")
        if any(c is None or (isinstance(c, float) and np.isnan(c)) for c in classes):
            raise InvalidInputError("classes must not contain missing values (NaN/None)")
        pool.extend(classes)
    return sorted_unique(pool)


@dataclass(frozen=True)
class EncodedAnswers:
    """Answers coded as integer arrays, ready for vectorised algorithms.

    ``tasks`` lists every task: answered ones and known-only ones. ``known_codes`` and
    ``known_labels`` give, for each known task, its task code and class code. ``start``
    holds warm-start posteriors (tasks x classes) from an earlier fit, or None.
    """

    tasks: pd.Index
    workers: pd.Index
    classes: list[Hashable]
    task: npt.NDArray[np.intp]
    worker: npt.NDArray[np.intp]
    label: npt.NDArray[np.intp]
    weight: npt.NDArray[np.float64]
    known_codes: npt.NDArray[np.intp]
    known_labels: npt.NDArray[np.intp]
    start: npt.NDArray[np.float64] | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def _factorize(values: pd.Series) -> tuple[npt.NDArray[np.intp], pd.Index]:
    """Integer codes and uniques, sorted when the values are orderable."""
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError:
        codes, uniques = pd.factorize(values, sort=False)
    return np.asarray(codes, dtype=np.intp), pd.Index(uniques)


def encode_answers(
    answers: pd.DataFrame,
    *,
    known: pd.Series | None = None,
    classes: Sequence[Hashable] | None = None,
) -> EncodedAnswers:
    """Validate answers (and known labels) and code them as integer arrays."""
    data = validate_answers(answers)
    known = validate_known(known)
    raw_codes, raw_labels = pd.factorize(data["label"], sort=False)
    class_list = resolve_classes(raw_labels.tolist(), known=known, classes=classes)
    class_code = {c: i for i, c in enumerate(class_list)}
    raw_to_class = np.array([class_code[_to_python(v)] for v in raw_labels.tolist()], np.intp)

    n_answers = len(data)
    task_values = data["task"]
    if known is not None and len(known):
        task_values = pd.concat(
            [task_values.astype(object), pd.Series(known.index, dtype=object)],
            ignore_index=True,
        )
    task_codes, tasks = _factorize(task_values)
    worker_codes, workers = _factorize(data["worker"])
    repeated = int(data.duplicated(["task", "worker"]).sum())
    if repeated:  # real crowd exports hold them (ZenCrowd: 1,035): said, not refused
        logger.warning(
            "%d answers repeat a (task, worker) pair already answered; each counts as one "
            "more vote: drop or weight them (column 'weight') if that is not meant",
            repeated,
        )
    label_codes = raw_to_class[np.asarray(raw_codes, dtype=np.intp)]
    weight = (
        data["weight"].to_numpy(dtype=float)
        if "weight" in data.columns
        else np.ones(n_answers, dtype=float)
    )
    if known is not None and len(known):
        known_codes = task_codes[n_answers:]
        known_labels = np.array([class_code[_to_python(v)] for v in known.tolist()], np.intp)
    else:
        known_codes = np.empty(0, dtype=np.intp)
        known_labels = np.empty(0, dtype=np.intp)
    if tasks.dtype == object:
        tasks = tasks.infer_objects()
    tasks.name = "task"
    workers.name = "worker"
    return EncodedAnswers(
        tasks=tasks,
        workers=workers,
        classes=class_list,
        task=task_codes[:n_answers],
        worker=worker_codes,
        label=label_codes,
        weight=weight,
        known_codes=known_codes,
        known_labels=known_labels,
    )


def argmax_ties_low(probas: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """Row-wise argmax; near-ties (within TIE_TOLERANCE) go to the lowest class."""
    top = probas.max(axis=1, keepdims=True)
    return np.asarray(np.argmax(probas >= top - TIE_TOLERANCE, axis=1), dtype=np.intp)


def warm_start(data: EncodedAnswers, init: Aggregator | pd.DataFrame) -> npt.NDArray[np.float64]:
    """Starting posteriors for `data` from an earlier fit's probabilities.

    Tasks and classes are matched by value; tasks (or rows) the earlier fit did not
    cover start from the weighted vote shares.
    """
    previous = init if isinstance(init, pd.DataFrame) else init.probas_
    if not isinstance(previous, pd.DataFrame):
        raise InvalidInputError("init must be a fitted aggregator or a probability DataFrame")
    columns = [_to_python(c) for c in previous.columns]
    frame = previous.set_axis(pd.Index(columns), axis=1).reindex(
        index=data.tasks, columns=pd.Index(data.classes)
    )
    start = np.nan_to_num(frame.to_numpy(dtype=float), nan=0.0)
    start = np.clip(start, 0.0, None)
    totals = start.sum(axis=1, keepdims=True)
    fresh = initial_shares(data)
    covered = totals[:, 0] > 0
    start[covered] /= totals[covered]
    start[~covered] = fresh[~covered]
    return start


def initial_shares(data: EncodedAnswers) -> npt.NDArray[np.float64]:
    """Weighted vote share of each class per task (uniform rows for unanswered tasks)."""
    n_tasks, n_classes = data.n_tasks, data.n_classes
    votes = np.bincount(
        data.task * n_classes + data.label,
        weights=data.weight,
        minlength=n_tasks * n_classes,
    ).reshape(n_tasks, n_classes)
    totals = votes.sum(axis=1, keepdims=True)
    empty = totals[:, 0] <= 0
    votes[empty] = 1.0
    totals[empty] = n_classes
    return np.asarray(votes / totals, dtype=float)


def start_posteriors(data: EncodedAnswers) -> npt.NDArray[np.float64]:
    """Where EM starts: the warm start if any, else vote shares; known tasks clamped."""
    posteriors = data.start.copy() if data.start is not None else initial_shares(data)
    clamp_known(data, posteriors)
    return posteriors


def clamp_known(data: EncodedAnswers, posteriors: npt.NDArray[np.float64]) -> None:
    """Set known tasks' rows to one-hot in place."""
    if len(data.known_codes):
        posteriors[data.known_codes] = 0.0
        posteriors[data.known_codes, data.known_labels] = 1.0


_LOG_FLOOR = float(np.log(np.finfo(float).tiny))


def safe_log(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Natural log with zeros floored at log(tiny) instead of -inf."""
    with np.errstate(divide="ignore"):
        return np.asarray(np.maximum(np.log(x), _LOG_FLOOR), dtype=float)


#: exp() below this gives a subnormal or zero, which NumPy computes some 100x slower.
_EXP_FLOOR = -700.0


def floored_exp(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """exp(x) with x floored at -700: the same but for values under 1e-304, which become
    1e-304, without the slow path of underflow (a loop of EM on confident posteriors
    spent most of its time there)."""
    return np.asarray(np.exp(np.maximum(x, _EXP_FLOOR)), dtype=float)


def normalize_log(joint: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Row-wise softmax of log scores (stable)."""
    shifted = joint - joint.max(axis=1, keepdims=True)
    probas = np.exp(shifted)
    return np.asarray(probas / probas.sum(axis=1, keepdims=True), dtype=float)


def log_not_converged(name: str, n_iter: int, shift: float, tol: float) -> None:
    """Warn that EM stopped at its iteration cap with posteriors still moving."""
    logger.warning(
        "%s stopped at n_iter=%d before converging: a posterior still moved by %.2g > tol=%.2g",
        name,
        n_iter,
        shift,
        tol,
    )


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """Validate an integer hyper-parameter."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_non_negative(name: str, value: object) -> float:
    """Validate a finite, non-negative float hyper-parameter."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a number, got {value!r}") from exc
    if not np.isfinite(number) or number < 0:
        raise InvalidInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


class Aggregator(ABC):
    """Base class: turns answers into a consensus label and class probabilities.

    Subclasses implement `_fit_proba`, which returns a (tasks x classes) probability
    array. The base class validates input, clamps known tasks to their labels,
    breaks ties towards the lowest class and stores the learned attributes
    ``classes_``, ``probas_`` and ``labels_``.
    """

    classes: Sequence[Hashable] | None

    def __init__(self, *, classes: Sequence[Hashable] | None = None) -> None:
        self.classes = classes

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a learned attribute before `fit`.
        if name.endswith("_") and not name.startswith("__"):
            raise NotFittedError(
                f"{type(self).__name__} has no {name!r} yet: call fit(answers) first"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    @abstractmethod
    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        """Return probabilities, shape (n_tasks, n_classes), rows summing to 1."""

    def fit(
        self,
        answers: pd.DataFrame,
        *,
        known: pd.Series | None = None,
        init: Aggregator | pd.DataFrame | None = None,
    ) -> Self:
        """Learn consensus labels and probabilities from `answers`; return self.

        ``init`` warm-starts iterative methods from an earlier fit (a fitted aggregator
        or its ``probas_``): tasks seen before start from their old posteriors, new
        tasks from the vote shares, so a refit after new answers converges in a few
        iterations. Non-iterative methods ignore it.
        """
        data = encode_answers(answers, known=known, classes=self.classes)
        if init is not None:
            data = replace(data, start=warm_start(data, init))
        probas = np.asarray(self._fit_proba(data), dtype=float)
        if len(data.known_codes):
            probas[data.known_codes] = 0.0
            probas[data.known_codes, data.known_labels] = 1.0
        class_index = pd.Index(data.classes, name="label")
        self.classes_: list[Hashable] = list(data.classes)
        self.probas_: pd.DataFrame = pd.DataFrame(probas, index=data.tasks, columns=class_index)
        codes = argmax_ties_low(probas)
        self.labels_: pd.Series = pd.Series(class_index.take(codes), index=data.tasks, name="label")
        logger.debug(
            "%s fitted: %d answers, %d tasks, %d workers, %d classes, %d known",
            type(self).__name__,
            len(data.task),
            data.n_tasks,
            data.n_workers,
            data.n_classes,
            len(data.known_codes),
        )
        return self

    def fit_predict(
        self,
        answers: pd.DataFrame,
        *,
        known: pd.Series | None = None,
        init: Aggregator | pd.DataFrame | None = None,
    ) -> pd.Series:
        """Fit and return the consensus label of each task (index name ``task``)."""
        return self.fit(answers, known=known, init=init).labels_

    def fit_predict_proba(
        self,
        answers: pd.DataFrame,
        *,
        known: pd.Series | None = None,
        init: Aggregator | pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Fit and return class probabilities (index tasks, columns classes)."""
        return self.fit(answers, known=known, init=init).probas_
