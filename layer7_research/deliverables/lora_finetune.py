"""``lora_finetune``: being written (layer 7, issue 16)."""

from __future__ import annotations

from layer0_math.lab import RunContext, deliverable


@deliverable(quick={})
def lora_finetune(ctx: RunContext) -> dict:
    raise NotImplementedError("lora_finetune is being written")
