"""``moe_vs_dense``: PLACEHOLDER, being written; replaced before done."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={"placeholder": True}, full={}, headline=[])
def moe_vs_dense(ctx: RunContext) -> dict[str, Any]:
    """Not written yet."""
    raise NotImplementedError("moe_vs_dense is being written")
