"""Where layer 7's models come from: layers 4's trained runs, found as artifacts in ``runs/``.

Research code never runs a lower layer's training. Each base model is a (deliverable, sub-run
folder) of layer 4 whose folder holds ``checkpoints/`` with self-describing layer-3 checkpoints,
which ``load_model`` rebuilds with no dataset on disk:

==================== ============================================ =================================
name                 layer-4 run                                  what it is
==================== ============================================ =================================
``gpt``              ``gpt_tinystories/<run>/gpt``                the TinyStories GPT (BPE tokenizer
                                                                  in its preprocessing)
``bert``             ``bert_mlm/<run>/train``                     the TinyStories BERT (MLM), its
                                                                  mean-pooled sentence embedding
``resnet``           ``cifar_vision/<run>/resnet20``              the CIFAR-10 ResNet-20
                                                                  (``resnet18`` in the full preset)
``ddpm``             ``ddpm_mnist/<run>/train``                   the class-conditional U-Net (EMA
                                                                  weights), trained with label drop
``feature_classifier`` ``feature_classifier/<run>/classifier``   the MNIST CNN of the FID yardstick
==================== ============================================ =================================

``<run>`` is the newest run whose manifest says ``ok``; a missing one is a
:class:`~layer0_math.lab.MissingArtifactError` naming ``make layer4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from layer0_math.lab import checkpoint_dir
from layer3_framework import load_model

LAYER = "layer4_architectures"


@dataclass(frozen=True)
class Source:
    """A base model's origin: layer 4's deliverable, its sub-run folders (first present wins),
    which weights (``"model"`` or ``"ema"``, layer 3's ``load_model``)."""

    deliverable: str
    folders: tuple[str, ...]
    weights: str = "model"


SOURCES = {
    "gpt": Source("gpt_tinystories", ("gpt",)),
    "bert": Source("bert_mlm", ("train",)),
    "resnet": Source("cifar_vision", ("resnet20", "resnet18")),
    "ddpm": Source("ddpm_mnist", ("train",), "ema"),
    "feature_classifier": Source("feature_classifier", ("classifier",)),
}


def source_dir(name: str, runs_dir: Path | None = None) -> Path:
    """The layer-4 sub-run folder (holding ``checkpoints/``) of base model ``name``."""
    if name not in SOURCES:
        raise ValueError(f"unknown base model {name!r}; expected one of {tuple(SOURCES)}")
    src = SOURCES[name]
    return checkpoint_dir(LAYER, src.deliverable, src.folders, runs_dir)


def load_base(
    name: str, device: str | torch.device | None = None, runs_dir: Path | None = None
) -> torch.nn.Module:
    """Base model ``name`` rebuilt from its checkpoint (eval mode; ``model.dlstack_spec`` holds
    the constructor arguments and the preprocessing)."""
    return load_model(source_dir(name, runs_dir), device, weights=SOURCES[name].weights)


def preprocessing(model: torch.nn.Module) -> dict[str, Any]:
    """What a loaded checkpoint says its inputs need (tokenizer, normalisation, class names)."""
    return dict(model.dlstack_spec.get("preprocessing", {}))
