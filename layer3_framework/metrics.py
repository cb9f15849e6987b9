"""Evaluation metrics, from scratch (checked against scikit-learn and scipy in the tests).

**Classification.** With the confusion matrix ``M[t, p]`` = number of samples of true class t
predicted as p (``accuracy`` and ``confusion_matrix`` are layer 0's, re-exported here), per
class c: ``TP_c = M[c, c]``, ``FP_c = Σ_t M[t, c] − TP_c``,
``FN_c = Σ_p M[c, p] − TP_c``, and

    precision_c = TP_c / (TP_c + FP_c),  recall_c = TP_c / (TP_c + FN_c),
    F1_c = 2 · precision_c · recall_c / (precision_c + recall_c)

(0 where a denominator is 0, as scikit-learn's ``zero_division=0``). *Macro* averages the
per-class numbers (every class counts equally); *micro* pools the counts first
(``Σ TP / Σ (TP + FP)``; for single-label data micro precision = recall = F1 = accuracy).

**Perplexity** of a language model is ``exp`` of its mean per-token negative log-likelihood: the
effective number of equally likely next tokens it hesitates between.

**FID** (Fréchet distance between Gaussians fitted to two feature sets, means μ, covariances Σ):

    FID = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})

The trace of the matrix square root needs no general ``sqrtm``: with ``A = Σ₁^{1/2}``
(symmetric, from an eigendecomposition), ``Σ₁Σ₂`` is similar to the symmetric PSD matrix
``A Σ₂ A``, so ``Tr (Σ₁Σ₂)^{1/2} = Σ_i √λ_i(A Σ₂ A)``.

**KID** is the squared maximum mean discrepancy with the polynomial kernel
``k(x, y) = (xᵀy / d + 1)³``, in its unbiased form over sets X (m) and Y (n):

    MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i, x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j)
             − 2/(mn) Σ_{i,j} k(x_i, y_j)

averaged over random subsets. Unlike FID it is unbiased, so it is comparable across sample sizes.

Both need *features*. The standard choice is Inception-v3's pool layer (ImageNet weights), which
are not available offline here; :class:`ClassifierFeatures` turns any trained classifier into an
extractor instead — on MNIST, a small CNN trained through this pipeline. Numbers from such an
extractor are comparable with each other, **not** with published FID/KID values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from layer0_math.classification import accuracy, confusion_matrix

__all__ = [
    "ClassifierFeatures",
    "accuracy",
    "confusion_matrix",
    "feature_distances",
    "fid",
    "kid",
    "mmd2_unbiased",
    "perplexity",
    "precision_recall_f1",
]

FeatureExtractor = Callable[[torch.Tensor], torch.Tensor]  # images (N, ...) -> features (N, d)
AVERAGES = ("macro", "micro", None)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, average: str | None = "macro"
) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
    """(precision, recall, F1): per class (``average=None``, arrays) or ``macro``/``micro``."""
    if average not in AVERAGES:
        raise ValueError(f"unknown average {average!r}; expected one of {AVERAGES}")
    m = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    tp = np.diag(m)
    fp, fn = m.sum(axis=0) - tp, m.sum(axis=1) - tp
    if average == "micro":
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    if average is None:
        return precision, recall, f1
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def perplexity(mean_nll: float) -> float:
    """``exp(mean negative log-likelihood per token)`` (nats)."""
    if not np.isfinite(mean_nll) or mean_nll < 0:
        raise ValueError(f"mean_nll must be a finite non-negative number of nats, got {mean_nll}")
    return float(np.exp(mean_nll))


def _features(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().cpu().to(torch.float64)
    if t.ndim != 2 or t.shape[0] < 2:
        raise ValueError(f"{name} must be (N >= 2, d) features, got {tuple(t.shape)}")
    return t


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric PSD matrix (tiny negative eigenvalues clipped)."""
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def fid(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N, d), float64."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrt_psd(cov_a)
    eig = torch.linalg.eigvalsh(root_a @ cov_b @ root_a)  # spectrum of Σ_a Σ_b
    tr_sqrt = eig.clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return float(value)


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased squared MMD with the cubic polynomial kernel (see module docstring)."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sum_xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    sum_yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return sum_xx + sum_yy - 2 * kxy.mean()


def kid(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    *,
    subsets: int = 10,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance: mean and std of MMD²_u over random equal-size subsets."""
    a, b = _features(features_a, "features_a"), _features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    size = min(subset_size, a.shape[0], b.shape[0])
    g = torch.Generator().manual_seed(seed)
    values = torch.stack(
        [
            mmd2_unbiased(
                a[torch.randperm(a.shape[0], generator=g)[:size]],
                b[torch.randperm(b.shape[0], generator=g)[:size]],
            )
            for _ in range(subsets)
        ]
    )
    std = float(values.std()) if subsets > 1 else 0.0
    return float(values.mean()), std


class ClassifierFeatures:
    """A feature extractor from a trained classifier: the input of its last Linear layer.

    ``ClassifierFeatures(model)(images) -> (N, d)``; runs in eval mode, without gradients, in
    batches. Stands in for Inception-v3 where its weights are unavailable (see module docstring).
    """

    def __init__(self, model: nn.Module, batch_size: int = 500) -> None:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"{type(model).__name__} has no Linear layer to take features before")
        self.model, self.head, self.batch_size = model, linears[-1], batch_size

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.head.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        was_training = self.model.training
        self.model.eval()
        try:
            for chunk in torch.split(images, self.batch_size):
                self.model(chunk)
        finally:
            hook.remove()
            self.model.train(was_training)
        return torch.cat(captured).flatten(1)


def feature_distances(
    extractor: FeatureExtractor, images_a: torch.Tensor, images_b: torch.Tensor, **kid_kwargs
) -> dict[str, float]:
    """FID and KID (mean, std) between two image sets under ``extractor``."""
    fa, fb = extractor(images_a), extractor(images_b)
    kid_mean, kid_std = kid(fa, fb, **kid_kwargs)
    return {"fid": fid(fa, fb), "kid": kid_mean, "kid_std": kid_std}
