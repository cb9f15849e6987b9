"""PLACEHOLDER: replaced by the helper that owns this deliverable."""

from layer0_math.deliverable import RunContext, deliverable


@deliverable(quick={"placeholder": 1}, headline=[])
def regularization_ablation(ctx: RunContext) -> dict:
    """Not built yet."""
    raise NotImplementedError("regularization_ablation is not built yet")
