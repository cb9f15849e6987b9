"""Grokking reproduced: Power et al. 2022 (arXiv 2201.02177) on modular addition, read with
Nanda et al. 2023's Fourier analysis (arXiv 2301.05217).

- :mod:`.data`: the table of (a + b) mod p as inputs [a, b, "="], split once at random.
- :mod:`.model`: the one-layer Transformer (layer 4's attention, a ReLU MLP, no LayerNorm).
- :mod:`.train`: the recipe (full-batch AdamW, weight decay 1) on layer 3's Trainer, with curves
  at log-spaced steps.
- :mod:`.fourier`: the DFT of the embedding over the token axis, norms per frequency, the key
  frequencies and the share of the norm they hold.
"""

from layer7_research.grokking.data import Split, all_pairs, check_prime, split_pairs
from layer7_research.grokking.fourier import (
    dft_matrix,
    fourier_basis,
    frequency_norms,
    key_frequencies,
    spectrum,
    top_fraction,
)
from layer7_research.grokking.model import GrokConfig, GrokkingTransformer
from layer7_research.grokking.train import (
    CurveRecorder,
    Curves,
    GrokResult,
    Recipe,
    eval_steps,
    train_grokking,
)

__all__ = [
    "Curves",
    "CurveRecorder",
    "GrokConfig",
    "GrokResult",
    "GrokkingTransformer",
    "Recipe",
    "Split",
    "all_pairs",
    "check_prime",
    "dft_matrix",
    "eval_steps",
    "fourier_basis",
    "frequency_norms",
    "key_frequencies",
    "spectrum",
    "split_pairs",
    "top_fraction",
    "train_grokking",
]
