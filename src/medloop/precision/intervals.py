"""Bootstrap percentile intervals, how many refits one needs, and running them.

A (1 - alpha) percentile interval from B refits runs from the (B + 1) alpha / 2-th
smallest refit to the as many-th largest (Davison & Hinkley 1997, *Bootstrap Methods and
their Application*, section 5.2: choose B so that (B + 1) alpha / 2 is a whole number).
The fewest refits that allow it are 2 / alpha - 1, 39 for a 95% interval, whose ends are
then the lowest and the highest refit. With fewer, even the lowest and highest refit
hold on average only (B - 1) / (B + 1) of the bootstrap distribution between them (a
third for 2 refits, 90% for 20): such an interval is not a 95% interval, so it is
refused rather than mislabelled. Davison & Hinkley advise far more refits (999) for
precise ends; 39 is the floor, not a target.

>>> min_refits(0.05)
39
>>> draws = np.arange(1.0, 40.0)[:, None]  # 39 refits of one patient: 1, 2, ..., 39
>>> percentile_interval(draws, 0.05)
(array([1.]), array([39.]))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
from joblib import Parallel, delayed

from medloop.exceptions import InvalidInputError

#: The interval's level everywhere it is shown (1 - alpha).
ALPHA = 0.05

T = TypeVar("T")


def min_refits(alpha: float = ALPHA) -> int:
    """The fewest bootstrap refits a (1 - alpha) percentile interval needs: 2 / alpha - 1."""
    return math.ceil(2.0 / alpha - 1.0 - 1e-9)


#: The refits a 95% interval is made of by default: the fewest it needs.
REFITS = min_refits(ALPHA)


def check_refits(n_bootstrap: Any, alpha: float = ALPHA, *, none_allowed: bool = False) -> None:
    """Refuse a refit count too small for a (1 - alpha) interval (0 passes where
    `none_allowed`: no interval at all), before any refit is made."""
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha!r}")
    fewest = min_refits(alpha)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise InvalidInputError(f"n_bootstrap must be a whole number, got {n_bootstrap!r}")
    if n_bootstrap == 0 and none_allowed:
        return
    if n_bootstrap < fewest:
        level = f"{100 * (1 - alpha):g}%"
        raise InvalidInputError(
            f"a {level} bootstrap interval needs at least {fewest} refits (n_bootstrap), got "
            f"{n_bootstrap}: fewer do not reach {level} even from the lowest to the highest"
            + (" (0: no interval)" if none_allowed else "")
        )


def percentile_interval(draws: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the (1 - alpha) percentile interval of `draws` (refits along the
    first axis), at positions (B + 1) alpha / 2 and (B + 1)(1 - alpha / 2) in sorted
    order (interpolated between refits where these are not whole numbers)."""
    stacked = np.asarray(draws, dtype=float)
    check_refits(len(stacked), alpha)
    lower = np.quantile(stacked, alpha / 2, axis=0, method="weibull")
    upper = np.quantile(stacked, 1 - alpha / 2, axis=0, method="weibull")
    return lower, upper


def run_refits(
    refit: Callable[..., T],
    calls: Iterable[Sequence[Any]],
    *,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[T]:
    """``refit(*args)`` for each of `calls`, in order: here one after another
    (``n_jobs=1``), else in `n_jobs` worker processes (joblib's loky; -1: one per CPU).
    `refit` must be a module-level function, and its arguments carry their own seeds,
    so the results are the same whatever `n_jobs`. `progress` is called with the
    number done after each.

    Refits are independent and CPU-bound (scikit-learn and scikit-survival fits hold
    the GIL), so processes, not threads; a resample's rows and a seed are all each
    one needs."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
        raise InvalidInputError(f"n_jobs must be a positive whole number or -1, got {n_jobs!r}")
    if n_jobs == 1:
        results = (refit(*args) for args in calls)
    else:
        parallel = Parallel(n_jobs=n_jobs, return_as="generator")
        results = parallel(delayed(refit)(*args) for args in calls)
    done: list[T] = []
    for result in results:
        done.append(result)
        if progress is not None:
            progress(len(done))
    return done
