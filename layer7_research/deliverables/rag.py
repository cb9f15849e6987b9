"""``rag``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def rag(ctx: RunContext) -> dict:
    raise NotImplementedError("rag is being written")
