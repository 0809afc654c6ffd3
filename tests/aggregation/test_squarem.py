"""SQUAREM-accelerated EM over posteriors: same fixed point, fewer steps, objective kept."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from medloop.aggregation.squarem import accelerated_em

Array = npt.NDArray[np.float64]
Step = Callable[[Array], tuple[Array, float, None]]


def _slow_contraction(rate: float) -> tuple[Array, Array, Step]:
    """Posteriors drawn towards `target` by `rate` a step (plain EM's linear rate),
    the objective rising as they near it; and a start far from it."""
    rng = np.random.default_rng(0)
    target = rng.dirichlet(np.ones(3), size=200)
    start = np.full((200, 3), 1.0 / 3)

    def step(posteriors: Array) -> tuple[Array, float, None]:
        objective = -float(np.square(posteriors - target).sum())
        return target + rate * (posteriors - target), objective, None

    return target, start, step


def _no_known(posteriors: Array) -> None:
    pass


def test_a_slow_iteration_reaches_its_fixed_point_in_a_few_steps() -> None:
    target, start, step = _slow_contraction(0.99)  # plain iteration: 873 steps to 1e-6
    run = accelerated_em(step, start, tol=1e-6, n_iter=1000, clamp=_no_known)
    assert run.converged and run.n_steps < 100
    assert np.abs(run.posteriors - target).max() < 1e-4
    assert np.allclose(run.posteriors.sum(axis=1), 1.0)
    assert len(run.history) <= run.n_steps
    assert (np.diff(run.history) >= 0).all()


def test_the_step_cap_is_kept() -> None:
    _, start, step = _slow_contraction(0.99)
    for cap in (1, 2, 3, 5):
        run = accelerated_em(step, start, tol=1e-9, n_iter=cap, clamp=_no_known)
        assert run.n_steps == cap and not run.converged and run.shift > 1e-9


def test_an_extrapolation_that_lowers_the_objective_is_dropped() -> None:
    """Every extrapolated point scores -inf here: the run falls back to plain steps
    (two kept out of every three taken) and still ends at the fixed point."""
    target, start, slow = _slow_contraction(0.9)
    visited = [start]

    def step(posteriors: Array) -> tuple[Array, float, None]:
        updated, objective, _ = slow(posteriors)
        on_path = any(posteriors is point for point in visited)
        visited.append(updated)
        return updated, objective if on_path else -np.inf, None

    run = accelerated_em(step, start, tol=1e-6, n_iter=1000, clamp=_no_known)
    assert run.converged and np.abs(run.posteriors - target).max() < 1e-4
    assert len(run.history) == run.n_steps - run.n_steps // 3
    assert (np.diff(run.history) >= 0).all()
