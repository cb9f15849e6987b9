"""``tiny_clip``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def tiny_clip(ctx: RunContext) -> dict:
    raise NotImplementedError("tiny_clip is being written")
