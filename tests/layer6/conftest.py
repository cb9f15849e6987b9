"""Shared layer-6 fixtures: tiny random-init models saved as layer-3 checkpoints, and a registry
of them exported to every backend (eager, ONNX, TorchScript, int8 ONNX).

``tiny_registry`` (session-scoped, read-only by convention) holds the three kinds under the
names the real export uses: ``gpt`` (generator: a 2-layer GPT with a BPE tokenizer trained on a
few KB of text), ``ddpm`` (denoiser: a small class-conditional U-Net, T = 50) and ``resnet``
(classifier: a ResNet with one block per stage, flip TTA baked in). A test that registers new
versions or changes files takes ``tiny_registry_copy`` (a private copy in its tmp_path).
``tiny_checkpoints`` maps each kind to its checkpoint folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from layer0_math.datasets import CIFAR10_CLASSES
from layer3_framework.checkpoint import save_checkpoint
from layer4_architectures.generative.unet import UNet
from layer4_architectures.sequence.bpe import EOT, BPETokenizer
from layer4_architectures.sequence.gpt import GPT
from layer4_architectures.vision.resnet import ResNet
from layer6_serving.export import export_bundle
from layer6_serving.registry import ModelRegistry

TINY_NAMES = {"generator": "gpt", "denoiser": "ddpm", "classifier": "resnet"}
_WORDS = (
    "once upon a time there was a little girl named lily she liked to play with her red "
    "ball in the park one day the sun was hot and a big dog came to say hello tom was "
    "happy they ran and jumped and laughed all day"
).split()


def tiny_text(n_words: int = 900, seed: int = 0) -> str:
    """A few KB of TinyStories-like text: stories of random words separated by <|endoftext|>."""
    rng = np.random.default_rng(seed)
    words = [_WORDS[i] for i in rng.integers(len(_WORDS), size=n_words)]
    stories = [" ".join(words[i : i + 60]) + "." for i in range(0, n_words, 60)]
    return EOT.join(stories)


def _save(
    folder: Path,
    model: torch.nn.Module,
    target: str,
    kwargs: dict,
    pre: dict,
    config: dict | None = None,
    ema: bool = False,
) -> Path:
    """A layer-3 checkpoint of ``model`` (with an EMA shadow equal to it when ``ema``, as the
    DDPM's trainer writes one)."""
    spec = {"target": target, "kwargs": kwargs, "preprocessing": pre}
    states = {"hooks": {"ema": {"shadow": dict(model.state_dict())}}} if ema else None
    save_checkpoint(
        folder / "checkpoints" / "step_00000001.safetensors",
        model=model,
        step=1,
        model_spec=spec,
        config=config or {},
        states=states,
    )
    return folder


def make_tiny_checkpoints(root: Path) -> dict[str, Path]:
    """One tiny random-init checkpoint folder per kind under ``root``."""
    torch.manual_seed(0)
    tok = BPETokenizer.train(tiny_text(), 300)
    gpt_kw = {
        "vocab_size": tok.vocab_size,
        "block_size": 32,
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
    }
    gpt_pre = {"kind": "text", "seq_len": 32, "tokenizer_kind": "bpe", "tokenizer": tok.to_dict()}
    unet_kw = {
        "base_channels": 8,
        "channel_mults": [1, 2, 2],
        "groups": 4,
        "heads": 2,
        "timesteps": 50,
        "num_classes": 10,
    }
    unet = UNet(**unet_kw)
    with torch.no_grad():  # the real init zeroes the output conv (eps = 0): make it say something
        unet.out.weight.normal_(0, 0.05)
    res_kw = {
        "in_channels": 3,
        "image_size": 32,
        "num_classes": 10,
        "widths": [4, 8, 8],
        "blocks": [1, 1, 1],
    }
    image_pre = {
        "kind": "image",
        "shape": [3, 32, 32],
        "mean": [0.4913, 0.4821, 0.4465],
        "std": [0.2452, 0.2428, 0.2606],
        "scale": 255,
        "classes": list(CIFAR10_CLASSES),
    }
    digit_pre = {
        "kind": "image",
        "shape": [1, 28, 28],
        "mean": [0.0],
        "std": [1.0],
        "scale": 255,
        "classes": [str(i) for i in range(10)],
    }
    return {
        "generator": _save(
            root / "gpt", GPT(**gpt_kw), "layer4_architectures.sequence.gpt.GPT", gpt_kw, gpt_pre
        ),
        "denoiser": _save(
            root / "ddpm",
            unet,
            "layer4_architectures.generative.unet.UNet",
            unet_kw,
            digit_pre,
            ema=True,
        ),
        "classifier": _save(
            root / "resnet",
            ResNet(**res_kw),
            "layer4_architectures.vision.resnet.ResNet",
            res_kw,
            image_pre,
            {"task": {"flip_tta": True}},
        ),
    }


def tiny_real_inputs(kind: str, tok_text: str | None = None) -> np.ndarray:
    """Stand-ins for the real parity inputs, of the right kind and range."""
    rng = np.random.default_rng(1)
    if kind == "classifier":
        return rng.integers(0, 256, size=(4, 3, 32, 32)).astype(np.float32) / 255
    if kind == "denoiser":
        return (rng.random((4, 1, 28, 28)) > 0.8).astype(np.float32)
    tok = BPETokenizer.train(tok_text or tiny_text(), 300)
    return np.array([tok.encode("once upon a time there was a little")[:8]] * 2)


def _shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this run sees (the base temp's parent under
    xdist): the fixtures below are built once per run, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _once(folder: Path, build) -> Path:
    """``build(folder)`` unless another worker already did (a lock file serialises them)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / ".done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = _once(_shared_dir(tmp_path_factory) / "tiny_checkpoints", make_tiny_checkpoints)
    return {kind: root / name for kind, name in TINY_NAMES.items()}


def build_tiny_registry(root: Path, checkpoints: dict[str, Path]) -> ModelRegistry:
    """gpt, ddpm and resnet v1 exported to eager, onnx, torchscript (+ int8) under ``root``."""
    registry = ModelRegistry(root)
    for kind, name in TINY_NAMES.items():
        export_bundle(
            registry, name, checkpoints[kind], kind, int8=True, real=tiny_real_inputs(kind)
        )
    return registry


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory, tiny_checkpoints) -> ModelRegistry:
    """The tiny models in a registry (shared by the run's workers: do not write to it)."""
    root = _once(
        _shared_dir(tmp_path_factory) / "tiny_registry",
        lambda folder: build_tiny_registry(folder, tiny_checkpoints),
    )
    return ModelRegistry(root)


@pytest.fixture
def tiny_registry_copy(tiny_registry, tmp_path) -> ModelRegistry:
    """A private copy of ``tiny_registry`` that a test may change."""
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry.root, root, ignore=shutil.ignore_patterns(".done"))
    return ModelRegistry(root)
