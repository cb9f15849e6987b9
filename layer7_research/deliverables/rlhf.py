"""``rlhf``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def rlhf(ctx: RunContext) -> dict:
    raise NotImplementedError("rlhf is being written")
