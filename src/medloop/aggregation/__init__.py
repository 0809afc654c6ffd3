"""Aggregation: turn many noisy answers per task into one consensus label.

Every aggregator follows one contract (see `medloop.aggregation.base`)::

    >>> import pandas as pd
    >>> from medloop.aggregation import DawidSkene, MajorityVote
    >>> answers = pd.DataFrame(
    ...     {"task": [1, 1, 1, 2, 2, 2], "worker": list("abcabc"), "label": [0, 0, 1, 1, 1, 0]}
    ... )
    >>> MajorityVote().fit_predict(answers).tolist()
    [0, 1]
    >>> DawidSkene().fit_predict_proba(answers).shape
    (2, 2)
"""

from medloop.aggregation.base import Aggregator, validate_answers
from medloop.aggregation.dawid_skene import DawidSkene
from medloop.aggregation.ebcc import EBCC
from medloop.aggregation.glad import GLAD
from medloop.aggregation.mace import MACE
from medloop.aggregation.majority_vote import MajorityVote
from medloop.aggregation.minimax_entropy import MinimaxEntropy
from medloop.aggregation.one_coin import OneCoinDawidSkene
from medloop.aggregation.registry import DEFAULT_METHOD, METHODS, Method, make_aggregator
from medloop.aggregation.wawa import Wawa

__all__ = [
    "DEFAULT_METHOD",
    "EBCC",
    "GLAD",
    "MACE",
    "METHODS",
    "Aggregator",
    "DawidSkene",
    "MajorityVote",
    "Method",
    "MinimaxEntropy",
    "OneCoinDawidSkene",
    "Wawa",
    "make_aggregator",
    "validate_answers",
]
