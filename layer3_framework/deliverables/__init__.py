"""Layer 3's deliverables, in run order: ``python -m layer3_framework [--preset quick|full]``.

- ``torch_ports``: the PyTorch twins of layer 1's MLP and layer 2's CifarCNN, CharLM (LSTM, GRU)
  and MultiHeadAttention load the scratch weights and match outputs and gradients in float64,
  and 100 SGD steps side by side end at the same weights.
- ``training_pipeline``: the CIFAR-10 CNN trained through the Hydra pipeline (W&B offline,
  checkpoints), then the two reproducibility demonstrations on a short sub-run: the same seed
  twice gives identical metrics, and a run interrupted and resumed ends bit for bit where the
  unbroken run ends. Every sub-run's manifest names this run as its parent.
- ``profiling``: torch.profiler on training steps (top-operator table, Chrome trace), throughput,
  and the effect of torch.compile and bf16 autocast, labelled with the hardware that measured it
  (CPU model, bf16 instructions, torch version and threads).

Each is one module of orchestration over the library modules of this layer.
"""

from layer3_framework.deliverables.profiling import profiling
from layer3_framework.deliverables.torch_ports import torch_ports
from layer3_framework.deliverables.training_pipeline import training_pipeline

__all__ = ["torch_ports", "training_pipeline", "profiling"]
