"""Classifier-free guidance: one network, two noise estimates, and a scale that trades the
diversity of the samples (FID) for their fidelity to the requested class (accuracy).

Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", https://arxiv.org/abs/2207.12598.

**The estimate.** Layer 4's conditional denoiser was trained with label drop-out (its
``DiffusionTask``, ``class_dropout`` = 0.1: the label replaced by the null class ∅ =
``num_classes``), so the same network gives the conditional ε_y = ε_θ(x_t, t, y) and the
unconditional ε_∅ = ε_θ(x_t, t, ∅). Guided sampling runs the ordinary sampler on

    ε̃_w = ε_∅ + w (ε_y − ε_∅)                  (layer 4's ``Diffusion.eps``; not rewritten here)

Convention, layer 4's and this module's: **w = 0 is the unconditional model, w = 1 the
conditional one, w > 1 guided.** Ho & Salimans write ε̃ = (1 + w') ε_y − w' ε_∅, so w = 1 + w'
(their w' = 0 is our w = 1; :func:`ho_salimans_scale`). The issue's sweep "0-8" is in our w.

**The implicit classifier.** A noise estimate is a scaled score, ε = −σ_t ∇ₓ log p_t(x) with
σ_t = √(1 − ᾱ_t), and Bayes gives ∇ₓ log p_t(y | x) = ∇ₓ log p_t(x | y) − ∇ₓ log p_t(x), so the
two estimates of one network imply a classifier:

    ∇ₓ log p_t(y | x) = −(ε_y − ε_∅) / σ_t                  (:func:`implicit_classifier_grad`)
    ε̃_w = ε_y − (w − 1) σ_t ∇ₓ log p_t(y | x)               (:func:`guided_eps_from_classifier`)
        = −σ_t ∇ₓ log [p_t(x | y)^w p_t(x)^{1−w}] = −σ_t ∇ₓ log [p_t(x) p_t(y | x)^w].

Guidance is classifier guidance (Dhariwal & Nichol 2021) with that implicit classifier raised
to the power w: for w > 1 the chain is pushed to where the class is unambiguous. The requested
class gets easier to recognise (accuracy up) while the samples stop covering p(x | y) (a tilted
density, not the noised version of any one distribution: FID up at large w).

**What this module adds to layer 4** (which samples with guidance already):

- :func:`sample_sweep`: for each w, ``n`` samples of the requested classes, balanced (sample i asks
  for ``classes[i mod K]``), every w from the same seed: the same x_T and step noise (common
  random numbers), so a column of the sample grid differs between rows by the guidance only;
- :func:`judge`: layer 4's yardstick (the ``feature_classifier`` CNN: FID and KID against the
  MNIST test set, the confident share, the class entropy) plus the accuracy of the *requested*
  class as the classifier sees it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from layer4_architectures.generative.diffusion import Diffusion, NoiseSchedule, to_unit
from layer4_architectures.generative.yardstick import Yardstick


def ho_salimans_scale(w: float) -> float:
    """Our scale w (ε_∅ + w(ε_y − ε_∅)) as Ho & Salimans' w' ((1 + w')ε_y − w'ε_∅): w' = w − 1."""
    return float(w) - 1.0


def noise_scale(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """σ_t = √(1 − ᾱ_t) for (B,) integer t, shaped (B, 1, ..., 1) to broadcast against ``like``."""
    schedule.check_t(t)
    ab = schedule.alpha_bars.to(like.device)[t.to(like.device)].to(like.dtype)
    return (1 - ab).sqrt().view(-1, *([1] * (like.dim() - 1)))


def implicit_classifier_grad(
    diffusion: Diffusion, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """∇ₓ log p_t(y | x) ≈ −(ε_y − ε_∅) / σ_t, the classifier the denoiser implies: (B, ...)."""
    if not diffusion.num_classes:
        raise ValueError("an unconditional denoiser implies no classifier (num_classes = 0)")
    null = torch.full_like(y, diffusion.num_classes)
    eps_y = diffusion.eps(x, t, y, None)  # ε_θ(x_t, t, y)
    eps_null = diffusion.eps(x, t, null, None)  # ε_θ(x_t, t, ∅)
    return -(eps_y - eps_null) / noise_scale(diffusion.schedule, t, x)


def guided_eps_from_classifier(
    eps_cond: torch.Tensor, grad_log_py: torch.Tensor, sigma: torch.Tensor, w: float
) -> torch.Tensor:
    """ε̃_w = ε_y − (w − 1) σ_t ∇ₓ log p_t(y | x): the guided estimate in the classifier's terms."""
    return eps_cond - (w - 1) * sigma * grad_log_py


# ----------------------------------------------------------------------------- the sweep


def balanced_labels(n: int, classes: Sequence[int]) -> torch.Tensor:
    """(n,) long: sample i asks for ``classes[i mod K]`` (the counts differ by at most one)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    cls = torch.as_tensor(list(classes), dtype=torch.long)
    if cls.numel() == 0 or cls.unique().numel() != cls.numel():
        raise ValueError(f"classes must be distinct and non-empty, got {list(classes)}")
    return cls[torch.arange(n) % cls.numel()]


def check_scales(scales: Sequence[float]) -> list[float]:
    """The guidance scales as floats: non-empty, finite, distinct (a ValueError otherwise)."""
    out = [float(w) for w in scales]
    if not out or not all(math.isfinite(w) for w in out) or len(set(out)) != len(out):
        raise ValueError(f"guidance scales must be non-empty, finite and distinct, got {scales}")
    return out


def scale_key(w: float) -> str:
    """A metric-name-safe label of a scale: 0.5 -> ``w0p5``, 2 -> ``w2``."""
    return "w" + f"{w:g}".replace(".", "p").replace("-", "m")


@dataclass
class GuidedSet:
    """The samples of one guidance scale: images (n, C, H, W) in [0, 1] and the class each
    asked for (n,), with the seconds the sampler took."""

    w: float
    images: torch.Tensor
    labels: torch.Tensor
    seconds: float


def _request(w: float, labels: torch.Tensor) -> tuple[torch.Tensor | None, float | None]:
    """(classes, guidance) for ``Diffusion.sample``: w = 0 and w = 1 need one network pass, not
    two (ε̃_0 = ε_∅, the null class; ε̃_1 = ε_y), every other w the guided pair."""
    if w == 0.0:
        return None, None
    if w == 1.0:
        return labels, None
    return labels, w


def sample_sweep(
    diffusion: Diffusion,
    scales: Sequence[float],
    n: int,
    *,
    classes: Sequence[int] = tuple(range(10)),
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    seed: int = 0,
    chunk_size: int = 500,
    progress: Callable[..., Any] | None = None,
) -> list[GuidedSet]:
    """``n`` samples per guidance scale, balanced over ``classes``, every scale from ``seed``.

    ``sampler``/``steps``/``eta`` are layer 4's (``"ddpm"``: all T ancestral steps; ``"ddim"``:
    ``steps`` timesteps, η = 0 deterministic, η = 1 as noisy as DDPM's steps).
    ``progress(iterable, total=, desc=)`` wraps the chunks of each scale.
    """
    labels = balanced_labels(n, classes)
    out = []
    for w in check_scales(scales):
        y, guidance = _request(w, labels)
        start = time.perf_counter()
        x, _ = diffusion.sample(
            n,
            sampler=sampler,
            steps=steps,
            eta=eta,
            classes=y,
            guidance=guidance,
            seed=seed,  # the same x_T and noise for every w
            chunk_size=chunk_size,
            progress=None if progress is None else _described(progress, f"w={w:g}"),
        )
        out.append(GuidedSet(w, to_unit(x), labels, time.perf_counter() - start))
    return out


def _described(progress: Callable[..., Any], desc: str) -> Callable[..., Any]:
    return lambda it, total: progress(it, total=total, desc=desc)


# ----------------------------------------------------------------------------- judging


@torch.no_grad()
def classifier_probs(yardstick: Yardstick, images01: torch.Tensor) -> torch.Tensor:
    """p(c | x) of the yardstick's classifier: (N, 1, 28, 28) in [0, 1] -> (N, K), CPU."""
    x = (images01 - yardstick.mean) / yardstick.std  # the classifier's input normalisation
    return yardstick.model(x.to(yardstick.device)).double().softmax(dim=1).cpu()


def requested_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, list[float]]:
    """Share of samples classified as the class they asked for, overall and per class (in the
    order of ``labels.unique()``)."""
    if probs.shape[0] != labels.shape[0]:
        raise ValueError(f"{probs.shape[0]} predictions for {labels.shape[0]} labels")
    hit = (probs.argmax(dim=1) == labels).double()  # (N,)
    per_class = [float(hit[labels == c].mean()) for c in labels.unique()]
    return float(hit.mean()), per_class


def judge(yardstick: Yardstick, guided: GuidedSet) -> dict[str, Any]:
    """The yardstick's score of one scale's samples (FID, KID, confident share, class entropy
    against the first n MNIST test images) and the requested-class accuracy."""
    score = yardstick.score(guided.images)
    accuracy, per_class = requested_accuracy(
        classifier_probs(yardstick, guided.images), guided.labels
    )
    return {
        "w": guided.w,
        "accuracy": accuracy,
        "accuracy_per_class": per_class,
        **score,
        "seconds": guided.seconds,
    }
