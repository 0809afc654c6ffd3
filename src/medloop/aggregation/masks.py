"""STAPLE: fuse binary segmentation masks (Warfield, Zou & Wells, IEEE TMI 2004).

Each rater ``r`` has a sensitivity ``p_r`` (P(marks 1 | truly 1)) and specificity
``q_r`` (P(marks 0 | truly 0)); the true mask is hidden. EM alternates the per-pixel
posterior of foreground and the raters' ``p, q``, over all pixels at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from medloop.exceptions import InvalidInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StapleResult:
    """Fused foreground probabilities (mask shape), rater sensitivities and specificities."""

    probability: npt.NDArray[np.float64]
    sensitivity: npt.NDArray[np.float64]
    specificity: npt.NDArray[np.float64]
    prior: float
    n_iter: int

    def mask(self, threshold: float = 0.5) -> npt.NDArray[np.bool_]:
        """The fused binary mask."""
        return np.asarray(self.probability >= threshold)


def staple(
    masks: npt.ArrayLike,
    *,
    n_iter: int = 100,
    tol: float = 1e-7,
    prior: float | None = None,
    init_sensitivity: float = 0.9,
    init_specificity: float = 0.9,
) -> StapleResult:
    """STAPLE over ``masks`` of shape (raters, *image shape), values 0/1 (or bool).

    ``prior`` is the foreground probability of a pixel; None estimates it as the mean
    rater foreground fraction (the usual global prior). Pixels every rater left empty
    still count (they inform specificity).
    """
    data = np.asarray(masks)
    if data.ndim < 2 or data.shape[0] < 1 or data.size == 0:
        raise InvalidInputError("masks must have shape (raters, *image) with at least one rater")
    if not np.isin(data, (0, 1)).all():
        raise InvalidInputError("masks must be binary (0/1 or bool)")
    if n_iter < 1:
        raise InvalidInputError(f"n_iter must be >= 1, got {n_iter}")
    for name, value in (
        ("prior", 0.5 if prior is None else prior),
        ("init_sensitivity", init_sensitivity),
        ("init_specificity", init_specificity),
    ):
        if not 0.0 < value < 1.0:  # a probability; 0 or 1 would pin it there
            raise InvalidInputError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    shape = data.shape[1:]
    d = data.reshape(data.shape[0], -1).astype(float)  # raters x pixels
    f = float(d.mean()) if prior is None else float(prior)
    if not 0.0 < f < 1.0:  # every rater's mask empty (or full): the estimate's bounds
        f = float(np.clip(f, 1e-6, 1 - 1e-6))
    eps = 1e-9
    p = np.full(d.shape[0], init_sensitivity)
    q = np.full(d.shape[0], init_specificity)
    w = d.mean(axis=0)
    iteration = 0
    while iteration < n_iter:
        iteration += 1
        log_fg = np.log(f) + (
            d * np.log(p + eps)[:, None] + (1 - d) * np.log(1 - p + eps)[:, None]
        ).sum(0)
        log_bg = np.log(1 - f) + (
            (1 - d) * np.log(q + eps)[:, None] + d * np.log(1 - q + eps)[:, None]
        ).sum(0)
        updated = 1.0 / (1.0 + np.exp(np.clip(log_bg - log_fg, -700, 700)))
        fg, bg = updated.sum(), (1 - updated).sum()
        p = (d @ updated) / max(fg, eps)
        q = ((1 - d) @ (1 - updated)) / max(bg, eps)
        p, q = np.clip(p, eps, 1 - eps), np.clip(q, eps, 1 - eps)
        shift = float(np.abs(updated - w).max())
        w = updated
        if shift <= tol:
            break
    logger.debug("STAPLE: %d raters, %d pixels, %d iterations", d.shape[0], d.shape[1], iteration)
    return StapleResult(w.reshape(shape), p, q, f, iteration)
