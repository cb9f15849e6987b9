"""The alternative engine with one classic mistake: d tanh(x)/dx written 1 − tanh x (the square
forgotten). Mastery mode must fail on it, and say expected, got and by how much."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_alt_value", Path(__file__).with_name("alt_value.py")
)
_alt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_alt)
_alt._UNARY["tanh"] = (math.tanh, lambda x, y: 1.0 - y)  # the bug: should be 1 − y²

Value = _alt.Value
__all__ = ["Value"]
