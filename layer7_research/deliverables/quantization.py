"""``quantization``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def quantization(ctx: RunContext) -> dict:
    raise NotImplementedError("quantization is being written")
