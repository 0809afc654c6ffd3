"""Learning commands (predict, bench train, bench al)."""

from __future__ import annotations
