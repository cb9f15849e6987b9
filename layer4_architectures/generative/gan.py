"""The generative adversarial network (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661)
with DCGAN's architecture (Radford et al. 2016, https://arxiv.org/abs/1511.06434) for 28×28.

**The game.** A generator G maps noise z ~ N(0, I) to images; a discriminator D(x) ∈ (0, 1)
(σ of a logit) says how likely x is real. D maximises

    V(D, G) = E_{x~p_data}[log D(x)] + E_z[log(1 − D(G(z)))],

i.e. minimises the binary cross-entropy with real = 1 and fake = 0. For a fixed G the optimum is
pointwise, D*(x) = p_data(x) / (p_data(x) + p_g(x)) (maximise a log D + b log(1 − D) over D:
D = a / (a + b)); plugged in, V(D*, G) = 2 JSD(p_data ‖ p_g) − log 4, minimal iff p_g = p_data.

**The non-saturating loss.** Early on D rejects fakes easily, D(G(z)) ≈ 0, where log(1 − D(G(z)))
is flat: G's gradient vanishes. G minimises −log D(G(z)) instead (same fixed point, strong
gradient where G is bad): with ℓ = D's logit, −log σ(ℓ) = softplus(−ℓ), ∂/∂ℓ = −(1 − σ(ℓ)).

**DCGAN for 28×28.** G: z (B, Z) → Linear → (B, 4w, 7, 7) → ConvTranspose 4×4/2 → (B, 2w, 14, 14)
→ ConvTranspose 4×4/2 → (B, 1, 28, 28), tanh; BatchNorm + ReLU between. D mirrors it:
(B, 1, 28, 28) → Conv 4×4/2 → (B, w, 14, 14) → Conv 4×4/2 → (B, 2w, 7, 7) → Linear → logit;
LeakyReLU(0.2), BatchNorm on the inner layer. Images are in [−1, 1] (data ``mnist_pm1``).

**Training** alternates two optimizers through the trainer's task protocol: at each step D ("d")
steps on a real batch and a detached fake batch, then G ("g") on fresh fakes, seeing the D just
updated. ``d_steps = k`` steps G only every k-th step (:meth:`GANTask.optimizer_order`): a
too-strong discriminator, one of the failure modes (with a D learning rate ×10), whose G gets
little signal and collapses onto few modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.task import Logs, Sums, Task


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """−E[log D(x)] − E[log(1 − D(G(z)))]: D's binary cross-entropy, real 1 and fake 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating loss −E[log D(G(z))] = E[softplus(−ℓ)] on D's logits ℓ."""
    return F.softplus(-fake_logits).mean()


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)), the best D against a fixed G."""
    return p_data / (p_data + p_g)


def _check_size(image_size: int, width: int) -> None:
    if image_size % 4 or image_size < 4:
        raise ValueError(
            f"DCGAN needs an image_size divisible by 4 (two 2x steps), got {image_size}"
        )
    if width < 1:
        raise ValueError(f"DCGAN width must be >= 1, got {width}")


class Generator(nn.Module):
    """z (B, Z) -> images (B, C, S, S) in [−1, 1]; S = 4 · (S/4) through two 2× up-convolutions."""

    def __init__(
        self, in_channels: int = 1, image_size: int = 28, latent_dim: int = 64, width: int = 32
    ) -> None:
        super().__init__()
        _check_size(image_size, width)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim, self.side = latent_dim, image_size // 4
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 4 * width * self.side**2, bias=False),
            nn.BatchNorm1d(4 * width * self.side**2),
            nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4 * width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, in_channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (B, {self.latent_dim}), got {tuple(z.shape)}")
        h = self.project(z).view(z.shape[0], -1, self.side, self.side)  # (B, 4w, S/4, S/4)
        return self.up(h)  # (B, 2w, S/2, S/2) -> (B, C, S, S)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, S, S) in [0, 1] (eval mode: BatchNorm's running statistics)."""
        if n <= 0:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        was_training = self.training
        self.eval()
        z = torch.randn(n, self.latent_dim, generator=generator)
        dev = next(self.parameters()).device
        out = torch.cat([self(c.to(dev)).cpu() for c in torch.split(z, 1000)])
        self.train(was_training)
        return (out + 1) / 2


class Discriminator(nn.Module):
    """images (B, C, S, S) in [−1, 1] -> logits (B,)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 32) -> None:
        super().__init__()
        _check_size(image_size, width)
        side = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),  # (B, w, S/2, S/2)
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),  # (B, 2w, S/4, S/4)
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * side**2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class GANTask(Task):
    """DCGAN training with the non-saturating loss and two optimizers, ``"d"`` and ``"g"``.

    The served model (``model_key``) is the generator; the discriminator is built here with the
    generator's image size. ``d_steps = k``: G steps every k-th step only.
    """

    model_key = "generator"
    OPTIMIZERS = ("d", "g")

    def __init__(self, generator: Generator, d_width: int = 32, d_steps: int = 1) -> None:
        super().__init__()
        if d_steps < 1:
            raise ValueError(f"d_steps must be >= 1, got {d_steps}")
        self.generator, self.d_steps = generator, d_steps
        channels = generator.up[-2].out_channels
        self.discriminator = Discriminator(channels, 4 * generator.side, d_width)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """The parameters each optimizer owns."""
        return {
            "d": list(self.discriminator.parameters()),
            "g": list(self.generator.parameters()),
        }

    def optimizer_order(self, step: int, names: Sequence[str]) -> Sequence[str]:
        if tuple(names) == ("main",):  # one optimizer over both nets: simultaneous steps
            return names
        if tuple(names) != self.OPTIMIZERS:
            raise ValueError(
                f"a GAN trains with optimizers {self.OPTIMIZERS} (or one, 'main'), "
                f"got {tuple(names)}"
            )
        return self.OPTIMIZERS if (step + 1) % self.d_steps == 0 else ("d",)

    def _fakes(self, n: int, like: torch.Tensor) -> torch.Tensor:
        z = torch.randn(n, self.generator.latent_dim, device=like.device, dtype=like.dtype)
        return self.generator(z)

    def _d_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, Logs]:
        real_logits = self.discriminator(x)
        fake_logits = self.discriminator(self._fakes(x.shape[0], x).detach())
        logs = {
            "d_real": torch.sigmoid(real_logits).mean().detach(),
            "d_fake": torch.sigmoid(fake_logits).mean().detach(),
        }
        return discriminator_loss(real_logits, fake_logits), logs

    def _g_loss(self, x: torch.Tensor) -> torch.Tensor:
        return generator_loss(self.discriminator(self._fakes(x.shape[0], x)))

    def training_step(self, batch: Any, step: int, optimizer: str) -> tuple[torch.Tensor, Logs]:
        """``"d"``: D's loss; ``"g"``: G's; ``"main"`` (layer 3's ``run()`` builds one optimizer
        over both nets): their sum, with D frozen in G's term so that each net's gradient is its
        own loss's (simultaneous rather than alternating updates)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch  # (B, C, S, S) in [-1, 1]
        if optimizer == "d":
            return self._d_loss(x)
        if optimizer == "g":
            return self._g_loss(x), {}
        if optimizer == "main":
            d_loss, logs = self._d_loss(x)
            params = list(self.discriminator.parameters())
            for p in params:
                p.requires_grad_(False)
            try:
                g_loss = self._g_loss(x)
            finally:
                for p in params:
                    p.requires_grad_(True)
            return d_loss + g_loss, {**logs, "g_loss": g_loss.detach()}
        raise ValueError(f"unknown optimizer {optimizer!r}; a GAN has {self.OPTIMIZERS}")

    def validation_step(self, batch: Any) -> Sums:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        real_logits = self.discriminator(x).float()
        fake_logits = self.discriminator(self._fakes(x.shape[0], x)).float()
        n = x.shape[0]
        d_loss = discriminator_loss(real_logits, fake_logits).double() * n
        g_loss = generator_loss(fake_logits).double() * n
        return {"loss": (d_loss + g_loss, n), "d_loss": (d_loss, n), "g_loss": (g_loss, n)}


class SampleGrid:
    """A trainer hook: every ``every`` steps, G's images for a fixed z (in [0, 1]), kept in
    :attr:`grids` as ``(step, (n, C, S, S))`` to show how samples evolve over training."""

    def __init__(self, generator: Generator, every: int, n: int = 64, seed: int = 0) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        g = torch.Generator().manual_seed(seed)
        self.generator, self.every = generator, every
        self.z = torch.randn(n, generator.latent_dim, generator=g)
        self.grids: list[tuple[int, torch.Tensor]] = []

    @torch.no_grad()
    def __call__(self, trainer: Any) -> None:
        if trainer.step % self.every:
            return
        was_training = self.generator.training
        self.generator.eval()
        dev = next(self.generator.parameters()).device
        images = (self.generator(self.z.to(dev)).cpu() + 1) / 2
        self.generator.train(was_training)
        self.grids.append((trainer.step, images))
