"""One yardstick for every generative model of this layer: FID, KID and classifier-judged quality.

**Features.** FID and KID compare *feature* distributions. The standard extractor is
Inception-v3's pool layer, whose ImageNet weights are not available offline; here it is an MNIST
CNN trained by the ``feature_classifier`` deliverable (test accuracy ≥ 0.99), through layer 3's
:class:`~layer3_framework.metrics.ClassifierFeatures`: the input of its last Linear layer,
φ(x) ∈ ℝ^d. Figures from it compare the models of this layer with each other, never with
published FIDs.

**FID** fits a Gaussian to each feature set, N(μ_r, Σ_r) for real and N(μ_g, Σ_g) for generated,

    FID = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^{1/2})

It is *biased upward* at finite n (the plug-in covariances add noise that the trace term does not
cancel): two samples of the same distribution score > 0, more so at small n. So the same n is
used on both sides for every model, and the **floor** — the MNIST test set against a disjoint half
of the training set, n images each — is reported beside every figure: a model at the floor is as
close to the test set as more real digits are.

**KID** is the unbiased squared MMD with the kernel k(x, y) = (xᵀy/d + 1)³, averaged over
subsets; its expectation is 0 for identical distributions at any n (so it may come out slightly
negative), which makes it comparable across sample sizes where FID is not.

**Classifier-judged quality.** With p(c | x) the classifier's softmax:

- confident share = (1/n) Σ_i 1[max_c p(c | x_i) ≥ 0.9]: the share of samples that look like
  *some* digit without doubt;
- class entropy = H(h) / log 10, h_c = (1/n) Σ_i 1[argmax p(· | x_i) = c]: 1.0 when every digit
  is produced equally often, 0 when all samples are one digit (mode collapse).

Real MNIST test digits score a confident share near 1 and a class entropy near 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layer0_math.datasets import load_mnist
from layer0_math.lab import MissingArtifactError, latest_run_dir
from layer3_framework.metrics import ClassifierFeatures, fid, kid
from layer3_framework.train import load_model

LAYER, DELIVERABLE = "layer4_architectures", "feature_classifier"
CLASSIFIER_FOLDER = "classifier"  # the feature_classifier run's sub-run holding the checkpoint
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
CONFIDENCE = 0.9
KID_SUBSETS = 10
KID_SUBSET_SIZE = 1000
RANGE_SLACK = 1e-4  # float round-off tolerated outside [0, 1]


def class_entropy(histogram: np.ndarray | torch.Tensor) -> float:
    """H(h) / log K of a class histogram (counts or frequencies over K classes): 1 = uniform."""
    h = torch.as_tensor(histogram, dtype=torch.float64).flatten()
    if h.numel() < 2 or (h < 0).any() or h.sum() <= 0:
        raise ValueError(f"histogram must be >= 2 non-negative counts, not all 0; got {h.tolist()}")
    p = h / h.sum()
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum() / math.log(h.numel())) + 0.0  # + 0.0: no -0.0


def confident_share(probs: torch.Tensor, threshold: float = CONFIDENCE) -> float:
    """Share of rows of ``probs`` (N, K) whose largest probability is ≥ ``threshold``."""
    return float((probs.max(dim=1).values >= threshold).double().mean())


def check_images01(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """``images`` as float32 (N, 1, 28, 28) in [0, 1], or a ValueError naming what is wrong."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or images.shape[0] < 2:
        raise ValueError(
            f"{name} must be (N >= 2, 1, 28, 28) MNIST-shaped images, got {tuple(images.shape)}"
        )
    images = images.detach().to(torch.float32)
    lo, hi = float(images.min()), float(images.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
        raise ValueError(
            f"{name} must be pixels in [0, 1] (map [-1, 1] outputs with (x + 1) / 2), "
            f"got values in [{lo:.4g}, {hi:.4g}]"
        )
    return images.clamp(0, 1)


def _as01(x: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) MNIST digits -> float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(x.astype(np.float32) / 255.0)[:, None]


@dataclass
class Yardstick:
    """Scores image sets against the MNIST test set under one trained classifier.

    ``reference`` (the test set) and ``real_pool`` (real images disjoint from it: half of the
    training set) are float (N, 1, 28, 28) in [0, 1]; ``mean``/``std`` are the classifier's input
    normalisation (its checkpoint's preprocessing). :meth:`from_runs` builds the real one.
    """

    model: nn.Module = field(repr=False)
    reference: torch.Tensor = field(repr=False)
    real_pool: torch.Tensor = field(repr=False)
    mean: float = 0.1307
    std: float = 0.3081
    classifier_accuracy: float = float("nan")
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    _ref_features: torch.Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device).eval()
        self.extractor = ClassifierFeatures(self.model)
        self.reference = check_images01(self.reference, "reference")
        self.real_pool = check_images01(self.real_pool, "real_pool")

    @classmethod
    def from_runs(
        cls, device: str | torch.device | None = None, runs_dir: Path | None = None
    ) -> Yardstick:
        """The yardstick of the newest good ``feature_classifier`` run, with the real MNIST sets.

        Missing run -> :class:`MissingArtifactError` naming the command that produces it.
        """
        run = latest_run_dir(LAYER, DELIVERABLE, runs_dir)
        sub = run / CLASSIFIER_FOLDER
        if not (sub / "checkpoints").is_dir():
            raise MissingArtifactError(
                f"{run} has no {CLASSIFIER_FOLDER}/checkpoints; rerun `make layer4` "
                f"(or `python -m {LAYER} {DELIVERABLE} --force`)"
            )
        dev = torch.device(device) if device is not None else torch.device("cpu")
        model = load_model(sub, device=str(dev))
        prep = model.dlstack_spec["preprocessing"]
        metrics = json.loads((run / "metrics.json").read_text())
        x_test, _ = load_mnist("test")
        x_train, _ = load_mnist("train")
        rng = np.random.default_rng(0)  # fixed orders: the first n of each is a random subset
        half = rng.permutation(len(x_train))[: len(x_train) // 2]
        return cls(
            model=model,
            reference=_as01(x_test[rng.permutation(len(x_test))]),
            real_pool=_as01(x_train[half]),
            mean=float(prep["mean"][0]),
            std=float(prep["std"][0]),
            classifier_accuracy=float(metrics.get("feature_classifier_accuracy", float("nan"))),
            device=dev,
        )

    # ------------------------------------------------------------------ features and predictions

    def _forward(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, d) and class probabilities (N, K), float64 on the CPU."""
        x = (check_images01(images01) - self.mean) / self.std  # the classifier's input
        feats = self.extractor(x.to(self.device))  # (N, d)
        with torch.no_grad():
            logits = self.extractor.head(feats)  # (N, K): the head on its own input
        return feats.double().cpu(), logits.double().softmax(dim=1).cpu()

    def features(self, images01: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [0, 1] -> (N, d) classifier features (float64, CPU)."""
        return self._forward(images01)[0]

    def _reference_features(self, n: int) -> torch.Tensor:
        if n > self.reference.shape[0]:
            raise ValueError(
                f"n={n} exceeds the {self.reference.shape[0]} reference (test) images: "
                "score at most that many samples"
            )
        if self._ref_features is None or self._ref_features.shape[0] < n:
            self._ref_features = self.features(self.reference[:n])  # only the n it needs
        return self._ref_features[:n]

    def _distances(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
        # subsets of half the smaller set (at most 1000): they differ, so their std means something
        size = max(2, min(KID_SUBSET_SIZE, a.shape[0] // 2, b.shape[0] // 2))
        kid_mean, kid_std = kid(a, b, subsets=KID_SUBSETS, subset_size=size, seed=self.seed)
        return {"fid": fid(a, b), "kid": kid_mean, "kid_std": kid_std}

    # ------------------------------------------------------------------ the two scores

    def score(self, images01: torch.Tensor) -> dict[str, Any]:
        """FID, KID (+ std over subsets) against the first n test images (n = len(images01)),
        the confident share and the class entropy of the predicted-class histogram."""
        images01 = check_images01(images01, "samples")
        n = images01.shape[0]
        reference = self._reference_features(n)
        feats, probs = self._forward(images01)
        hist = torch.bincount(probs.argmax(dim=1), minlength=NUM_CLASSES)
        return {
            **self._distances(feats, reference),
            "confident_share": confident_share(probs),
            "class_entropy": class_entropy(hist),
            "class_histogram": hist.tolist(),
            "n": n,
        }

    def headline(self, score: dict[str, Any], floor: dict[str, float]) -> dict[str, Any]:
        """The metrics every generative deliverable reports: its samples' scores beside the
        real-vs-real floor at the same n, and the accuracy of the classifier behind them."""
        return {
            "fid": score["fid"],
            "kid": score["kid"],
            "confident_share": score["confident_share"],
            "class_entropy": score["class_entropy"],
            "fid_floor": floor["fid_floor"],
            "kid_floor": floor["kid_floor"],
            "n_samples": score["n"],
            "feature_classifier_accuracy": self.classifier_accuracy,
        }

    def floor(self, n: int) -> dict[str, float]:
        """Real against real: ``n`` test images against ``n`` disjoint real (training) images:
        the FID and KID a perfect model would get at this n."""
        most = min(self.real_pool.shape[0], self.reference.shape[0])
        if not 2 <= n <= most:
            raise ValueError(f"n must be in [2, {most}] for the floor, got {n}")
        d = self._distances(self.features(self.real_pool[:n]), self._reference_features(n))
        return {"fid_floor": d["fid"], "kid_floor": d["kid"], "kid_floor_std": d["kid_std"]}


def image_grid(images01: torch.Tensor, nrow: int, pad: int = 2) -> np.ndarray:
    """(N, 1, H, W) images in [0, 1] -> one (rows·(H+pad)+pad, nrow·(W+pad)+pad) array to show,
    row-major, on a white-ish frame (0.5) so that black digits' borders stay visible."""
    images01 = torch.as_tensor(images01).detach().cpu().float()
    if images01.ndim != 4 or images01.shape[1] != 1 or nrow < 1:
        raise ValueError(f"need (N, 1, H, W) images and nrow >= 1, got {tuple(images01.shape)}")
    n, _, h, w = images01.shape
    rows = math.ceil(n / nrow)
    out = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5, dtype=np.float32)
    for i, img in enumerate(images01[:, 0].numpy()):
        r, c = divmod(i, nrow)
        out[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = img
    return out


def show_grid(ax: Any, images01: torch.Tensor, nrow: int, title: str) -> None:
    """Draw :func:`image_grid` of ``images01`` on a matplotlib axis, titled, without ticks."""
    ax.imshow(image_grid(images01, nrow), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def scored_title(what: str, score: dict[str, Any], floor: dict[str, Any]) -> str:
    """A sample grid's title: what it shows, then its FID beside the floor, confident share and
    class entropy (the yardstick's numbers are read against the floor, never alone)."""
    return (
        f"{what}\nFID {score['fid']:.2f} (real-vs-real floor {floor['fid_floor']:.2f}, "
        f"n={score['n']}), confident {score['confident_share']:.2f}, "
        f"class entropy {score['class_entropy']:.3f}"
    )
