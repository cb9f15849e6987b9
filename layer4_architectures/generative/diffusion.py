"""Denoising diffusion: the noise schedule, the ε-prediction task, DDPM and DDIM samplers.

**Forward process** (Ho et al. 2020, arXiv:2006.11239). Noise is added in ``T`` small steps,
``q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)``; with ``α_t = 1 − β_t`` and
``ᾱ_t = Π_{s≤t} α_s`` any step has the closed form

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),   i.e.  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,  ε ~ N(0, I).

Schedules: *linear*, β from 1e-4 to 0.02 over T = 1000 (Ho et al.), both ends scaled by 1000/T
for shorter chains so that ᾱ_T stays near 0; *cosine* (Nichol & Dhariwal 2021,
arXiv:2102.09672), ``ᾱ_t = f(t)/f(0)``, ``f(t) = cos²((t/T + s)/(1 + s) · π/2)``, s = 0.008, with
``β_t = 1 − ᾱ_t/ᾱ_{t−1}`` clipped at 0.999. Arrays here are indexed by t = 0..T with ᾱ_0 = 1.

**Posterior.** Bayes on the Gaussian joint of (x_{t−1}, x_t) given x_0:

    q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I),
    μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
    β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t.

**Training** (:class:`DiffusionTask`). The network ε_θ(x_t, t, y) predicts the noise; the
"simple" loss is ``E_{t ~ U{1..T}, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t, y)‖²``, a
reweighted variational bound, equivalently denoising score matching: ``∇ log q(x_t) ≈
−ε_θ / √(1 − ᾱ_t)``. With probability ``class_dropout`` the label is replaced by the null class,
so the same network also learns the unconditional ε (what classifier-free guidance combines).

**Sampling.** Both samplers estimate ``x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ) / √ᾱ_t`` (clipped to the data
range [−1, 1]) and step down:

- DDPM ancestral, T steps: ``x_{t−1} = μ̃_t(x̂_0, x_t) + √β̃_t z``;
- DDIM (Song et al. 2021, arXiv:2010.02502) on a sub-sequence τ_1 < … < τ_S of 1..T, from t to
  s < t: ``x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z``,
  ``σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)``; η = 0 is deterministic given x_T, and
  η = 1 with s = t − 1 is exactly the DDPM step (σ² = β̃_t and the means agree).

With a guidance scale w the noise estimate is ``ε_∅ + w (ε_y − ε_∅)`` (the null class ∅;
w = 1 is the conditional model). Samples are drawn in chunks from one generator seeded by
``seed``: the same seed and chunk size give the same samples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from layer3_framework.checkpoint import load_model
from layer3_framework.task import Sums, Task

NUM_DIGITS = 10
MEMORY_FRACTION = 0.5  # the largest share of available RAM one sample batch's output may take


# ----------------------------------------------------------------------------- schedules


def linear_betas(timesteps: int) -> torch.Tensor:
    """Ho et al.'s β_t = 1e-4 … 0.02 over T = 1000, scaled by 1000/T: (T,) float64."""
    scale = 1000.0 / timesteps
    if scale * 0.02 >= 1:
        raise ValueError(
            f"the linear schedule needs timesteps > 20 (β_T = 0.02·1000/T < 1), got {timesteps}"
        )
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's β_t = 1 − ᾱ_t/ᾱ_{t−1}, ᾱ_t = f(t)/f(0), clipped at 0.999: (T,)."""
    t = torch.arange(timesteps + 1, dtype=torch.float64)
    f = torch.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2  # (T+1,)
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
}


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t, α_t, ᾱ_t for t = 0..T (index 0: β_0 = 0, ᾱ_0 = 1) and the posterior coefficients."""

    name: str
    timesteps: int
    betas: torch.Tensor  # (T+1,) float64

    @classmethod
    def make(cls, name: str, timesteps: int) -> NoiseSchedule:
        if name not in SCHEDULES:
            raise ValueError(f"unknown noise schedule {name!r}; expected one of {list(SCHEDULES)}")
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"timesteps must be an integer >= 1, got {timesteps!r}")
        betas = torch.cat([torch.zeros(1, dtype=torch.float64), SCHEDULES[name](timesteps)])
        return cls(name, timesteps, betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)  # (T+1,), ᾱ_0 = 1

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[t] shaped (B, 1, ..., 1) to broadcast against ``like`` (B, ...)."""
        out = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.view(-1, *([1] * (like.dim() - 1)))

    def check_t(self, t: torch.Tensor, low: int = 1) -> None:
        if t.numel() and (int(t.min()) < low or int(t.max()) > self.timesteps):
            raise ValueError(
                f"timesteps must be in [{low}, {self.timesteps}], got range "
                f"[{int(t.min())}, {int(t.max())}]"
            )

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: (B, ...) with (B,) integer t in 1..T."""
        self.check_t(t)
        ab = self._at(self.alpha_bars, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def posterior_mean_variance(
        self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """μ̃_t (B, ...) and β̃_t (B, 1, ..., 1) of q(x_{t−1} | x_t, x_0) (module docstring)."""
        self.check_t(t)
        ab, ab_prev = self.alpha_bars, self.alpha_bars.roll(1)  # ab_prev[t] = ᾱ_{t−1}
        coef_x0 = ab_prev.sqrt() * self.betas / (1 - ab)
        coef_xt = self.alphas.sqrt() * (1 - ab_prev) / (1 - ab)
        var = (1 - ab_prev) / (1 - ab) * self.betas
        mean = self._at(coef_x0, t, x0) * x0 + self._at(coef_xt, t, xt) * xt
        return mean, self._at(var, t, xt)

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t."""
        ab = self._at(self.alpha_bars, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()


def check_denoiser(model: nn.Module, schedule: NoiseSchedule) -> None:
    """A ValueError unless ``model`` (a U-Net) was configured for ``schedule`` (name and T)."""
    cfg = getattr(model, "config", None)
    found = (getattr(cfg, "schedule", None), getattr(cfg, "timesteps", None))
    if found != (schedule.name, schedule.timesteps):
        raise ValueError(
            f"the denoiser was built for schedule={found[0]!r}, timesteps={found[1]!r} but the "
            f"sampler/task uses schedule={schedule.name!r}, timesteps={schedule.timesteps}"
        )


# ----------------------------------------------------------------------------- training


class DiffusionTask(Task):
    """ε-prediction with the simple loss (module docstring); ``model`` is ε_θ(x, t, y).

    The schedule is the model's (``model.config.schedule``, ``timesteps``); ``schedule`` and
    ``timesteps`` given here must agree with it (a ValueError otherwise).

    Timesteps, noise and label drop-out come from the task's own generator, seeded by ``seed``
    and checkpointed (``get_extra_state``), so a resumed run draws what an unbroken one does.
    Evaluation is deterministic: timesteps spread evenly over the batch and a fixed noise seed;
    it reports the loss overall and per timestep bucket (``loss_b<k>``: bucket k of ``buckets``
    equal ranges of 1..T, k = 0 the least noisy).
    """

    model_key = "model"

    def __init__(
        self,
        model: nn.Module,
        schedule: str | None = None,
        timesteps: int | None = None,
        class_dropout: float = 0.1,
        buckets: int = 10,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= class_dropout <= 1.0:
            raise ValueError(f"class_dropout must be in [0, 1], got {class_dropout}")
        self.model = model
        cfg = model.config
        self.schedule = NoiseSchedule.make(schedule or cfg.schedule, timesteps or cfg.timesteps)
        check_denoiser(model, self.schedule)
        if not 1 <= buckets <= self.schedule.timesteps:
            raise ValueError(f"buckets must be in [1, T={self.schedule.timesteps}], got {buckets}")
        self.class_dropout, self.buckets = class_dropout, buckets
        self.null_class = getattr(model.config, "num_classes", 0)
        self.generator = torch.Generator().manual_seed(seed)

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def _noise_loss(
        self, x0: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """‖ε − ε_θ(x_t, t, y)‖² averaged per image: (B,)."""
        xt = self.schedule.q_sample(x0, t, noise)  # (B, C, H, W)
        eps = self.model(xt, t, y).float()
        return (eps - noise).pow(2).flatten(1).mean(1)

    def _labels(self, y: torch.Tensor, drop: torch.Tensor) -> torch.Tensor | None:
        if not self.null_class:
            return None
        return torch.where(drop.to(y.device), torch.full_like(y, self.null_class), y)

    def training_step(self, batch: Any, step: int, optimizer: str = "main") -> tuple:
        x0, y = batch
        b, g = x0.shape[0], self.generator
        t = torch.randint(1, self.schedule.timesteps + 1, (b,), generator=g)  # t ~ U{1..T}
        noise = torch.randn(x0.shape, generator=g).to(x0.device)
        drop = torch.rand(b, generator=g) < self.class_dropout
        loss = self._noise_loss(x0, self._labels(y, drop), t.to(x0.device), noise)
        return loss.mean(), {}

    def bucket_of(self, t: torch.Tensor) -> torch.Tensor:
        """Bucket k of timestep t: k = ⌊(t − 1) · buckets / T⌋ (k = 0: the least noisy)."""
        return (t - 1) * self.buckets // self.schedule.timesteps

    def validation_step(self, batch: Any) -> Sums:
        x0, y = batch
        b = x0.shape[0]
        t = 1 + (torch.arange(b) * self.schedule.timesteps) // b  # every timestep range equally
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(x0.device)
        losses = self._noise_loss(x0, y if self.null_class else None, t.to(x0.device), noise)
        with torch.autocast(x0.device.type, enabled=False):
            losses = losses.double()
            out: Sums = {"loss": (losses.sum(), b)}
            k = self.bucket_of(t)  # (B,) on the CPU: the counts need no device sync
            counts = torch.bincount(k, minlength=self.buckets).tolist()
            k = k.to(x0.device)
            for i, count in enumerate(counts):
                if count:  # a batch smaller than the bucket count leaves some empty
                    out[f"loss_b{i}"] = (losses[k == i].sum(), count)
        return out


# ----------------------------------------------------------------------------- sampling


def ddim_timesteps(timesteps: int, steps: int) -> list[int]:
    """τ_1 < … < τ_S: ``steps`` timesteps of 1..T evenly spaced, ending at T (all of them when
    steps = T)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"DDIM steps must be an integer >= 1, got {steps!r}")
    if steps > timesteps:
        raise ValueError(f"DDIM steps={steps} exceeds the schedule's T={timesteps}")
    return [int(v) for v in np.linspace(1, timesteps, steps).round()] if steps > 1 else [timesteps]


def _available_bytes() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class Diffusion:
    """A trained denoiser and its schedule: noise estimates, DDPM and DDIM sampling."""

    def __init__(self, model: nn.Module, schedule: NoiseSchedule) -> None:
        check_denoiser(model, schedule)
        self.model, self.schedule = model.eval(), schedule
        self.num_classes = model.config.num_classes
        self.shape = (model.config.in_channels, model.config.image_size, model.config.image_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: Path,
        *,
        schedule: str | None = None,
        timesteps: int | None = None,
        weights: str = "ema",
        device: str | torch.device | None = None,
    ) -> Diffusion:
        """The denoiser of a run folder or checkpoint (layer 3's ``load_model``), with the
        schedule its spec names; with ``schedule``/``timesteps`` given, a checkpoint of another
        schedule is refused."""
        model = load_model(Path(path), device=device, weights=weights)
        cfg = model.config
        for key, want in (("schedule", schedule), ("timesteps", timesteps)):
            if want is not None and getattr(cfg, key) != want:
                raise ValueError(
                    f"checkpoint {path} was trained with {key}={getattr(cfg, key)!r}, "
                    f"but {key}={want!r} was asked for"
                )
        return cls(model, NoiseSchedule.make(cfg.schedule, cfg.timesteps))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def eps(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None, guidance: float | None
    ) -> torch.Tensor:
        """ε̂(x_t, t, y); with a guidance scale w: ε_∅ + w (ε_y − ε_∅)."""
        if guidance is None or y is None:
            return self.model(x, t, y).float()
        null = torch.full_like(y, self.num_classes)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null])).float()
        cond, uncond = both.chunk(2)
        return uncond + guidance * (cond - uncond)

    def _x0(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> tuple:
        """x̂_0 clipped to [−1, 1] and the ε consistent with it and x_t."""
        x0 = self.schedule.predict_x0(x, t, eps).clamp(-1, 1)
        ab = self.schedule._at(self.schedule.alpha_bars, t, x)
        return x0, (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    def ddpm_step(
        self, x: torch.Tensor, t: int, eps: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """x_{t−1} = μ̃_t(x̂_0, x_t) + √β̃_t z (no noise at t = 1)."""
        tt = torch.full((x.shape[0],), t, device=x.device)
        x0, _ = self._x0(x, tt, eps)
        mean, var = self.schedule.posterior_mean_variance(x0, x, tt)
        z = torch.randn(x.shape, generator=g).to(x.device)
        return mean + var.sqrt() * z

    def ddim_step(
        self, x: torch.Tensor, t: int, s: int, eps: torch.Tensor, eta: float, g: torch.Generator
    ) -> torch.Tensor:
        """x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε̂ + σ z (module docstring); s = 0 ends at x̂_0."""
        tt = torch.full((x.shape[0],), t, device=x.device)
        x0, eps = self._x0(x, tt, eps)
        ab_t, ab_s = (float(self.schedule.alpha_bars[i]) for i in (t, s))
        sigma = eta * math.sqrt((1 - ab_s) / (1 - ab_t) * (1 - ab_t / ab_s))
        z = torch.randn(x.shape, generator=g).to(x.device)
        return math.sqrt(ab_s) * x0 + math.sqrt(max(1 - ab_s - sigma**2, 0.0)) * eps + sigma * z

    def _check_classes(self, classes: Sequence[int] | torch.Tensor | None, n: int) -> Any:
        if classes is None:
            return None
        if not self.num_classes:
            raise ValueError("this denoiser is unconditional: classes must be None")
        y = torch.as_tensor(classes, dtype=torch.long).flatten()
        if y.numel() != n:
            raise ValueError(f"classes has {y.numel()} labels for n={n} samples")
        bad = y[(y < 0) | (y >= self.num_classes)]
        if bad.numel():
            raise ValueError(
                f"class {int(bad[0])} is outside 0..{self.num_classes - 1} "
                "(use classes=None for the null class)"
            )
        return y

    def _check_request(self, n: int, chunk_size: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"the number of samples must be an integer >= 1, got {n!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        need = n * math.prod(self.shape) * 4
        if need > MEMORY_FRACTION * _available_bytes():
            raise ValueError(
                f"n={n} samples need {need / 2**30:.1f} GiB for the output alone, more than half "
                f"the {_available_bytes() / 2**30:.1f} GiB of RAM available: sample fewer per call"
            )

    def plan(self, sampler: str, steps: int | None) -> list[tuple[int, int]]:
        """The (t, s) transitions of a sampler: DDPM t → t − 1 for t = T..1, DDIM τ_i → τ_{i−1}."""
        T = self.schedule.timesteps
        if sampler == "ddpm":
            if steps not in (None, T):
                raise ValueError(f"DDPM runs all T={T} steps; steps={steps} (use sampler='ddim')")
            return [(t, t - 1) for t in range(T, 0, -1)]
        if sampler == "ddim":
            taus = ddim_timesteps(T, T if steps is None else steps)
            return list(zip(reversed(taus), reversed([0, *taus[:-1]]), strict=True))
        raise ValueError(f"unknown sampler {sampler!r}; expected 'ddpm' or 'ddim'")

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        sampler: str = "ddpm",
        steps: int | None = None,
        eta: float = 0.0,
        classes: Sequence[int] | torch.Tensor | None = None,
        guidance: float | None = None,
        seed: int = 0,
        chunk_size: int = 500,
        keep: Iterable[int] = (),
        progress: Callable[..., Any] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """``n`` samples (n, C, H, W) in [−1, 1] on the CPU, and the states x_t at the timesteps
        in ``keep`` (x_0 is the result; ``keep`` states are CPU tensors, key = t)."""
        self._check_request(n, chunk_size)
        y = self._check_classes(classes, n)
        transitions = self.plan(sampler, steps)
        g = torch.Generator().manual_seed(seed)
        out, kept = torch.empty(n, *self.shape), {}
        wanted = set(keep)
        chunks = range(0, n, chunk_size)
        for start in progress(chunks, total=len(chunks)) if progress else chunks:
            stop = min(start + chunk_size, n)
            yc = None if y is None else y[start:stop].to(self.device)
            states = {}
            x = self._run_chain(stop - start, yc, transitions, sampler, eta, guidance, g, wanted,
                                states)  # fmt: skip
            out[start:stop] = x.cpu()
            for t, v in states.items():
                kept.setdefault(t, []).append(v)
        return out, {t: torch.cat(v) for t, v in kept.items()}

    def _run_chain(
        self,
        b: int,
        y: torch.Tensor | None,
        transitions: list[tuple[int, int]],
        sampler: str,
        eta: float,
        guidance: float | None,
        g: torch.Generator,
        wanted: set[int],
        states: dict[int, torch.Tensor],
    ) -> torch.Tensor:
        """One chunk from x_T ~ N(0, I) down the transitions: (b, C, H, W)."""
        x = torch.randn((b, *self.shape), generator=g).to(self.device)
        for t, s in transitions:
            if t in wanted:
                states[t] = x.cpu()
            eps = self.eps(x, torch.full((b,), t, device=self.device), y, guidance)
            if sampler == "ddpm":
                x = self.ddpm_step(x, t, eps, g)
            else:
                x = self.ddim_step(x, t, s, eps, eta, g)
        return x


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Model space [−1, 1] → pixels in [0, 1] (clamped), float32."""
    return ((x.float() + 1) / 2).clamp(0, 1)
