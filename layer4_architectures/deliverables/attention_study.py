"""``attention_study``: PLACEHOLDER, being written (owner H4); replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def attention_study(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("attention_study is being written")
