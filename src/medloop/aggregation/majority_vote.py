"""Majority vote: each task takes the label most of its (weighted) answers chose."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt

from medloop.aggregation.base import Aggregator, EncodedAnswers, initial_shares


def vote_shares(data: EncodedAnswers) -> npt.NDArray[np.float64]:
    """Weighted vote share of each class per task, shape (n_tasks, n_classes).

    Tasks without any (positive-weight) answer get a uniform row.
    """
    return initial_shares(data)


class MajorityVote(Aggregator):
    """Weighted majority vote; probabilities are the vote shares.

    An optional ``weight`` column weighs each answer (default 1). Ties go to the
    lowest class. Tasks in ``known`` come out with their known label.

    >>> import pandas as pd
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2], "worker": list("abcab"), "label": [0, 1, 1, 0, 0]}
    ... )
    >>> MajorityVote().fit_predict(answers).tolist()
    [1, 0]
    """

    def __init__(self, *, classes: Sequence[Hashable] | None = None) -> None:
        super().__init__(classes=classes)

    def _fit_proba(self, data: EncodedAnswers) -> npt.NDArray[np.float64]:
        return vote_shares(data)
