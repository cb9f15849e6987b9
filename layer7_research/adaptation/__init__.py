"""Parameter-efficient fine-tuning: train a few new numbers, keep the pretrained model frozen.

- :mod:`~layer7_research.adaptation.lora`: LoRA (Hu et al. 2021), h = W x + (α/r)·B A x with
  B = 0 at start, on chosen ``nn.Linear`` layers; merge into W for serving, unmerge back.
- :mod:`~layer7_research.adaptation.adapter`: bottleneck adapters (Houlsby et al. 2019),
  h + W_up GELU(W_down h) after the attention and/or MLP sublayer of layer 4's GPT blocks.

Both leave the model's outputs unchanged at initialisation and freeze every other parameter.
"""

from layer7_research.adaptation.adapter import (
    Adapted,
    BottleneckAdapter,
    adapter_parameters,
    adapters,
    apply_adapters,
)
from layer7_research.adaptation.lora import (
    LoRALinear,
    apply_lora,
    lora_layers,
    lora_parameters,
    lora_state_dict,
    merge_lora,
    trainable_parameters,
)

__all__ = [
    "Adapted",
    "BottleneckAdapter",
    "LoRALinear",
    "adapter_parameters",
    "adapters",
    "apply_adapters",
    "apply_lora",
    "lora_layers",
    "lora_parameters",
    "lora_state_dict",
    "merge_lora",
    "trainable_parameters",
]
