"""The variational auto-encoder (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114).

**Model.** A latent z ~ p(z) = N(0, I) generates x through a decoder p_θ(x | z); here a
*Bernoulli* decoder: per pixel j, p_θ(x_j | z) = π_j^{x_j} (1 − π_j)^{1 − x_j} with
π = σ(logits_θ(z)). (As in PyTorch's example VAE, grey levels x ∈ [0, 1] are used as soft
targets, so log p_θ(x | z) = −BCE(logits, x): the standard MNIST benchmark, though not a
normalised density on [0, 1]^784.)

**Inference.** The posterior p_θ(z | x) is intractable; an encoder gives a Gaussian
q_φ(z | x) = N(μ_φ(x), diag σ²_φ(x)) (it outputs μ and log σ²).

**ELBO.** For any q, by Jensen's inequality,

    log p(x) ≥ E_q[log p_θ(x | z)] − KL(q_φ(z | x) ‖ p(z)) = ELBO(x),

the gap being KL(q ‖ p_θ(z | x)). The KL between two Gaussians is closed-form:

    KL(N(μ, σ²) ‖ N(0, 1)) = ½ Σ_k (μ_k² + σ_k² − 1 − log σ_k²).

**Reparameterisation.** z = μ + σ ⊙ ε, ε ~ N(0, I) moves the randomness out of the parameters, so
∇_φ E_q[f(z)] = E_ε[∇_φ f(μ + σ ε)]: a low-variance pathwise gradient (the score-function
estimator E_q[f ∇ log q] is unbiased too, but far noisier).

**Importance-weighted bound** (Burda et al. 2016). With k draws z_i ~ q(z | x),

    log p(x) ≥ L_k = log (1/k) Σ_i p_θ(x | z_i) p(z_i) / q(z_i | x),

computed with logsumexp; L_1 = ELBO in expectation, L_k increases with k and tends to log p(x).
The reported IWAE NLL is −L_k averaged over the test set (k ≥ 100).

The classic architecture (PyTorch examples): 784 → 400 (ReLU) → 2 × 20 (μ, log σ²) and
20 → 400 (ReLU) → 784 logits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.task import Logs, Sums, Task

LOG_2PI = math.log(2 * math.pi)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²)."""
    return mu + (0.5 * logvar).exp() * eps


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per row: ½ Σ_k (μ² + σ² − 1 − log σ²).  (B, K) -> (B,)"""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; μ, diag σ²) summed over the last axis."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).square() / logvar.exp()).sum(dim=-1)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x | z) = Σ_j x_j log π_j + (1 − x_j) log(1 − π_j), π = σ(logits); per row."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=-1)


class VAE(nn.Module):
    """MLP VAE: encoder x (B, D) → h (B, H) → μ, log σ² (B, K); decoder z (B, K) → logits (B, D).

    ``in_channels`` and ``image_size`` come from the data (D = C·S·S); images may be given as
    (B, C, S, S) or flat (B, D).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: int = 400,
        latent_dim: int = 20,
    ) -> None:
        super().__init__()
        for name, value in (("hidden", hidden), ("latent_dim", latent_dim)):
            if value < 1:
                raise ValueError(f"VAE {name} must be >= 1, got {value}")
        self.image_shape = (in_channels, image_size, image_size)
        self.latent_dim = latent_dim
        d = in_channels * image_size * image_size
        self.enc = nn.Linear(d, hidden)
        self.enc_mu = nn.Linear(hidden, latent_dim)
        self.enc_logvar = nn.Linear(hidden, latent_dim)
        self.dec = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, S, S) or (B, D) -> μ, log σ² (B, K)."""
        h = F.relu(self.enc(x.flatten(1)))  # (B, H)
        return self.enc_mu(h), self.enc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., K) -> Bernoulli logits (..., D)."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"latent codes must have {self.latent_dim} dims, got {z.shape[-1]}")
        return self.dec(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x -> (logits (B, D), μ, log σ²) with one reparameterised draw z ~ q(z | x)."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, torch.randn_like(mu))
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, S, S) in [0, 1]: the decoder's mean σ(logits(z)), z ~ N(0, I)."""
        if n <= 0:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        dev = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(dev)
        return self.decode(z).sigmoid().view(n, *self.image_shape)

    @torch.no_grad()
    def decode_images(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes (N, K) -> mean images (N, C, S, S) in [0, 1]."""
        return self.decode(z).sigmoid().view(z.shape[0], *self.image_shape)


def elbo_terms(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: the reconstruction term −log p(x | z) (one draw z ~ q) and KL(q ‖ p). (B,)"""
    logits, mu, logvar = model(x)
    recon = -bernoulli_log_likelihood(logits, x.flatten(1))
    return recon, kl_to_standard_normal(mu, logvar)


@torch.no_grad()
def iwae_log_likelihood(model: VAE, x: torch.Tensor, k: int, chunk: int = 50) -> torch.Tensor:
    """L_k per image (B,): log (1/k) Σ_i p(x | z_i) p(z_i) / q(z_i | x), z_i ~ q(z | x), in nats.

    The k draws are taken ``chunk`` at a time and combined with one logsumexp.
    """
    if k < 1:
        raise ValueError(f"the number of importance samples k must be >= 1, got {k}")
    mu, logvar = model.encode(x)  # (B, K)
    flat = x.flatten(1)  # (B, D)
    log_w: list[torch.Tensor] = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn(m, *mu.shape, device=mu.device)  # (m, B, K)
        z = reparameterize(mu, logvar, eps)
        log_px_z = bernoulli_log_likelihood(model.decode(z), flat.expand(m, -1, -1))  # (m, B)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        log_qz = gaussian_log_density(z, mu, logvar)
        log_w.append(log_px_z + log_pz - log_qz)
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)  # (B,)


class VAETask(Task):
    """Minimises the negative ELBO per image, recon + β·KL (β = 1: the ELBO); logs both terms.

    Batches are (images in [0, 1], labels); labels are ignored.
    """

    model_key = "model"

    def __init__(self, model: VAE, beta: float = 1.0) -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.model, self.beta = model, beta

    def training_step(self, batch: Any, step: int, optimizer: str = "main") -> tuple:
        x = _images(batch)
        recon, kl = elbo_terms(self.model, x)
        loss = (recon + self.beta * kl).mean()
        logs: Logs = {"recon": recon.mean().detach(), "kl": kl.mean().detach()}
        return loss, logs

    def validation_step(self, batch: Any) -> Sums:
        x = _images(batch)
        recon, kl = elbo_terms(self.model, x)
        recon, kl = recon.double(), kl.double()
        n = x.shape[0]
        return {"loss": ((recon + kl).sum(), n), "recon": (recon.sum(), n), "kl": (kl.sum(), n)}


def _images(batch: Any) -> torch.Tensor:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"the Bernoulli VAE needs pixels in [0, 1] (data=mnist01), got values in [{lo}, {hi}]"
        )
    return x
