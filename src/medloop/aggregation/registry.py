"""Aggregation methods by name, with a "did you mean" error for unknown names.

>>> make_aggregator("majority_vote")
MajorityVote(classes=None)
>>> DEFAULT_METHOD in METHODS
True
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from medloop.aggregation.base import Aggregator
from medloop.aggregation.dawid_skene import DawidSkene
from medloop.aggregation.ebcc import EBCC
from medloop.aggregation.glad import GLAD
from medloop.aggregation.mace import MACE
from medloop.aggregation.majority_vote import MajorityVote
from medloop.aggregation.minimax_entropy import MinimaxEntropy
from medloop.aggregation.one_coin import OneCoinDawidSkene
from medloop.aggregation.wawa import Wawa
from medloop.types import DEFAULT_AGGREGATION, look_up_option
from medloop.types import AggregationMethod as Method

METHODS: dict[Method, Callable[..., Aggregator]] = {
    Method.MAJORITY_VOTE: MajorityVote,
    Method.WAWA: Wawa,
    Method.DAWID_SKENE: DawidSkene,
    Method.ONE_COIN: OneCoinDawidSkene,
    Method.GLAD: GLAD,
    Method.MACE: MACE,
    Method.EBCC: EBCC,
    Method.MINIMAX_ENTROPY: MinimaxEntropy,
}

#: The recommended default (`medloop.types.DEFAULT_AGGREGATION`, chosen by measurement).
DEFAULT_METHOD: Method = DEFAULT_AGGREGATION


def make_aggregator(
    method: str | Method | None = None,
    *,
    classes: Sequence[Hashable] | None = None,
    **params: Any,
) -> Aggregator:
    """A new aggregator by name (None: the recommended default)."""
    name = DEFAULT_METHOD if method is None else look_up_option(method, Method)
    return METHODS[name](classes=classes, **params)
