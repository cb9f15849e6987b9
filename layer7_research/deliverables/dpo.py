"""``dpo``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def dpo(ctx: RunContext) -> dict:
    raise NotImplementedError("dpo is being written")
