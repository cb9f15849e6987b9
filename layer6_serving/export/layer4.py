"""Layer 4's three trained models into the registry, with real parity inputs and drift references.

For each kind (:data:`~layer6_serving.artifacts.SOURCES`): find the newest ok run
(``source_checkpoint``), pick real inputs for the parity check (CIFAR-10 test images, MNIST test
digits, TinyStories validation prompts), summarise the training data for drift monitoring
(H4's ``reference_summary``: training images with the model's own predictions; story openings
as prompts) and call :func:`~layer6_serving.export.bundle.export_bundle`. Used by
``python -m layer6_serving export`` and by the ``export_models`` deliverable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.datasets import load
from layer3_framework.checkpoint import load_model
from layer4_architectures.sequence.bpe import EOT, train_val_split
from layer4_architectures.sequence.data import HOLDOUT, load_tokenizer
from layer6_serving.artifacts import SOURCES, source_checkpoint
from layer6_serving.export.bundle import checkpoint_sidecar, export_bundle, flip_tta_of
from layer6_serving.export.wrappers import ClassifierGraph
from layer6_serving.monitoring.drift import reference_summary, reference_summary_text
from layer6_serving.registry import ModelRegistry

REFERENCE_IMAGES = 5000  # training images summarised for the classifier's drift reference
REFERENCE_PROMPTS = 1000  # story openings summarised for the generator's


def cifar_test(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random CIFAR-10 test images float32 (n, 3, 32, 32) in [0, 1] and their labels."""
    x, y = load("cifar10", "test")
    idx = rng.choice(len(x), size=min(n, len(x)), replace=False)
    return x[idx].astype(np.float32) / 255, y[idx]


def tinystories_val_text() -> str:
    """The held-out 10% of TinyStories that layer 4's GPT was evaluated on."""
    return train_val_split(str(load("tinystories")), HOLDOUT)[1]


def story_openings(text: str, n: int) -> list[str]:
    """The first sentence of up to ``n`` paragraphs of ``text`` (split at <|endoftext|> and at
    blank lines)."""
    out = []
    for story in re.split(re.escape(EOT) + r"|\n\s*\n", text):
        first = story.strip().split(". ")[0].strip()
        if first:
            out.append(first if first.endswith(".") else first + ".")
        if len(out) == n:
            break
    return out


def _classifier_inputs(folder: Path, n_real: int, rng) -> tuple[np.ndarray, dict[str, Any]]:
    real, _ = cifar_test(n_real, rng)
    x, _ = load("cifar10", "train")
    train = x[rng.choice(len(x), size=REFERENCE_IMAGES, replace=False)].astype(np.float32) / 255
    model = load_model(folder)
    pre = model.dlstack_spec["preprocessing"]
    flip_tta = flip_tta_of(checkpoint_sidecar(folder)[1].get("config"))
    graph = ClassifierGraph(model, pre["mean"], pre["std"], flip_tta).eval()
    with torch.inference_mode():
        probs = torch.cat([graph(torch.from_numpy(c)).softmax(-1) for c in np.split(train, 10)])
    return real, reference_summary(train, probs.numpy())


def _denoiser_inputs(folder: Path, n_real: int, rng) -> tuple[np.ndarray, dict[str, Any]]:
    x, _ = load("mnist", "test")
    idx = rng.choice(len(x), size=n_real, replace=False)
    return x[idx][:, None].astype(np.float32) / 255, {}  # a class label has no drift reference


def _generator_inputs(folder: Path, n_real: int, rng) -> tuple[np.ndarray, dict[str, Any]]:
    tok = load_tokenizer(load_model(folder).dlstack_spec["preprocessing"])
    openings = story_openings(tinystories_val_text(), REFERENCE_PROMPTS)
    prompts = [tok.encode(s) for s in openings]
    length = min(len(p) for p in prompts[:n_real])
    real = np.array([p[:length] for p in prompts[:n_real]], dtype=np.int64)
    return real, reference_summary_text(prompts, tok.vocab_size)


INPUTS = {
    "classifier": _classifier_inputs,
    "denoiser": _denoiser_inputs,
    "generator": _generator_inputs,
}


def export_layer4(
    registry: ModelRegistry,
    kinds: tuple[str, ...] = tuple(SOURCES),
    *,
    runs_dir: Path | None = None,
    int8: bool = True,
    n_real: int = 16,
    seed: int = 0,
) -> dict[str, int]:
    """Register a new version of each kind's layer-4 model; ``{kind: version}``."""
    folders = {kind: source_checkpoint(kind, runs_dir) for kind in kinds}  # all missing first
    versions = {}
    for kind, folder in folders.items():
        src = SOURCES[kind]
        real, reference = INPUTS[kind](folder, n_real, np.random.default_rng(seed))
        versions[kind] = export_bundle(
            registry,
            src.registry_name,
            folder,
            kind,
            weights=src.weights,
            int8=int8,
            real=real,
            extra={"reference": reference},
            seed=seed,
        )
    return versions
