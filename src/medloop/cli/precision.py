"""Precision-medicine commands (patients, risk, recommend, bench precision)."""

from __future__ import annotations
