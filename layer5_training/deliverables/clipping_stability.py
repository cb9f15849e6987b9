"""PLACEHOLDER: replaced by the helper that owns this deliverable."""

from layer0_math.deliverable import RunContext, deliverable


@deliverable(quick={"placeholder": 1}, headline=[])
def clipping_stability(ctx: RunContext) -> dict:
    """Not built yet."""
    raise NotImplementedError("clipping_stability is not built yet")
