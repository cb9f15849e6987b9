"""Where the served models come from: layer 4's trained runs, found as artifacts in ``runs/``.

Serving never runs training code. Each model kind is a (deliverable, sub-run folder) of layer 4
whose folder holds ``checkpoints/`` with self-describing layer-3 checkpoints (weights plus the
model's class, constructor arguments and preprocessing), which ``load_model`` rebuilds with no
dataset on disk:

=========== ============================================ ==========================================
kind        layer-4 run                                  what it is
=========== ============================================ ==========================================
generator   ``gpt_tinystories/<run>/gpt``                the TinyStories GPT; its BPE tokenizer is
                                                         in the checkpoint's preprocessing
denoiser    ``ddpm_mnist/<run>/train``                   the class-conditional U-Net of the DDPM;
                                                         served with its EMA weights
classifier  ``cifar_vision/<run>/resnet20``              the CIFAR-10 ResNet-20 (``resnet18`` in
                                                         the full preset); normalisation statistics
                                                         and class names in preprocessing
=========== ============================================ ==========================================

``<run>`` is the newest run whose manifest says ``ok`` (``layer0_math.lab.checkpoint_dir``).
A missing one is a :class:`~layer0_math.lab.MissingArtifactError` that names the command making it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layer0_math.lab import checkpoint_dir

LAYER = "layer4_architectures"


@dataclass(frozen=True)
class Source:
    """One served model's origin: layer 4's deliverable, its sub-run folder (the first of
    ``folders`` present), which weights."""

    deliverable: str
    folders: tuple[str, ...]
    weights: str  # "model" or "ema" (layer 3's load_model)
    registry_name: str


SOURCES = {
    "generator": Source("gpt_tinystories", ("gpt",), "model", "gpt"),
    "denoiser": Source("ddpm_mnist", ("train",), "ema", "ddpm"),
    "classifier": Source("cifar_vision", ("resnet20", "resnet18"), "model", "resnet"),
}
KINDS = tuple(SOURCES)


def source_checkpoint(kind: str, runs_dir: Path | None = None) -> Path:
    """The layer-4 sub-run folder (holding ``checkpoints/``) that serves as model ``kind``."""
    if kind not in SOURCES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")
    src = SOURCES[kind]
    return checkpoint_dir(LAYER, src.deliverable, src.folders, runs_dir)  # names `make layer4`
