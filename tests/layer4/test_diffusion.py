"""Diffusion: schedules and q(x_t | x_0) against iterated noising, the posterior against Gaussian
conditioning in numpy, DDIM against DDPM, samplers against a known data distribution with the
exact ε-predictor, the task's random state and buckets, and bad inputs."""

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from layer4_architectures.generative import diffusion as diff
from layer4_architectures.generative.diffusion import (
    Diffusion,
    DiffusionTask,
    NoiseSchedule,
    ddim_timesteps,
)
from layer4_architectures.generative.unet import UNet

SCHEDULES = ["linear", "cosine"]


@dataclass
class FakeConfig:
    schedule: str
    timesteps: int
    num_classes: int = 0
    in_channels: int = 1
    image_size: int = 4


class GaussianOracle(nn.Module):
    """The exact ε* = E[ε | x_t, y] for data x_0 ~ N(μ_y, s² I) (per pixel):
    x_t ~ N(√ᾱ μ, ᾱ s² + 1 − ᾱ), so E[ε | x_t] = √(1 − ᾱ)(x_t − √ᾱ μ) / (ᾱ s² + 1 − ᾱ)."""

    def __init__(self, schedule, means, s, num_classes=0):
        super().__init__()
        self.config = FakeConfig(schedule.name, schedule.timesteps, num_classes)
        self.alpha_bars = schedule.alpha_bars.float()
        self.means, self.s = torch.as_tensor(means, dtype=torch.float32), s
        self.dummy = nn.Parameter(torch.zeros(()))  # a device to report

    def forward(self, x, t, y=None):
        ab = self.alpha_bars[t].view(-1, 1, 1, 1)
        mu = self.means[-1] if y is None else self.means[y].view(-1, 1, 1, 1)  # last: null
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * self.s**2 + 1 - ab)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize(("name", "T"), [(n, T) for n in SCHEDULES for T in (25, 100, 1000)])
def test_alpha_bar_is_monotone_decreasing_inside_0_1(name, T):
    ab = NoiseSchedule.make(name, T).alpha_bars.numpy()
    assert ab[0] == 1.0 and len(ab) == T + 1
    assert np.all(np.diff(ab) < 0)
    assert np.all((ab[1:] > 0) & (ab[1:] < 1))
    assert ab[-1] < 0.01  # the chain ends near pure noise


def test_linear_and_cosine_schedules_match_their_papers():
    lin = NoiseSchedule.make("linear", 1000).betas.numpy()
    assert lin[1] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    assert NoiseSchedule.make("linear", 250).betas[-1].item() == pytest.approx(0.08)  # ×1000/T
    T, s = 1000, 0.008
    t = np.arange(T + 1)
    f = np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
    ab = NoiseSchedule.make("cosine", T).alpha_bars.numpy()
    unclipped = np.arange(T + 1) < T - 5  # β is clipped at 0.999 only at the very end
    np.testing.assert_allclose(ab[unclipped], (f / f[0])[unclipped], rtol=1e-9)
    assert NoiseSchedule.make("cosine", T).betas.max().item() <= 0.999


@pytest.mark.parametrize("name", SCHEDULES)
def test_closed_form_q_equals_iterated_noising_in_distribution(name):
    T, n = 40, 200_000
    sched = NoiseSchedule.make(name, T)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((n,), 0.6, dtype=torch.float64)
    x = x0.clone()
    for t in range(1, T + 1):  # x_t = √(1 − β_t) x_{t−1} + √β_t ε
        beta = float(sched.betas[t])
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(n, generator=g, dtype=x.dtype)
        if t in (1, T // 4, T // 2, T):
            closed = sched.q_sample(
                x0, torch.full((n,), t), torch.randn(n, generator=g, dtype=x.dtype)
            )
            var = float(x.var())  # two independent samples: the differences' standard errors
            assert abs(float(x.mean() - closed.mean())) < 5 * math.sqrt(2 * var / n)
            assert abs(float(x.var() - closed.var())) < 5 * var * math.sqrt(4 / (n - 1))
            ab = float(np.prod(1 - sched.betas.numpy()[1 : t + 1]))  # ᾱ_t from the betas
            assert float(x.mean()) == pytest.approx(math.sqrt(ab) * 0.6, abs=5 * math.sqrt(1 / n))
            assert float(x.var()) == pytest.approx(1 - ab, abs=5 * math.sqrt(2 / n))


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_equals_gaussian_conditioning(name):
    """q(x_{t−1} | x_t, x_0) from the joint Gaussian of (x_{t−1}, x_t) given x_0, in numpy."""
    T = 30
    sched = NoiseSchedule.make(name, T)
    betas = np.concatenate([[0.0], sched.betas.numpy()[1:]])
    rng = np.random.default_rng(0)
    for t in (1, 2, 15, T):
        ab_prev = np.prod(1 - betas[1:t])  # ᾱ_{t−1} (1 for t = 1)
        a_t = 1 - betas[t]
        x0, xt = rng.normal(size=5), rng.normal(size=5)
        # x_{t−1} ~ N(√ᾱ_{t−1} x0, 1 − ᾱ_{t−1}); x_t = √α_t x_{t−1} + √β_t ε
        m1, v1 = np.sqrt(ab_prev) * x0, 1 - ab_prev
        m2, v2, cov = np.sqrt(a_t) * m1, a_t * v1 + betas[t], np.sqrt(a_t) * v1
        want_mean, want_var = m1 + cov / v2 * (xt - m2), v1 - cov**2 / v2
        mean, var = sched.posterior_mean_variance(
            torch.from_numpy(x0), torch.from_numpy(xt), torch.full((5,), t)
        )
        np.testing.assert_allclose(mean.numpy(), want_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var.flatten().numpy(), np.full(5, want_var), atol=1e-12)


# ----------------------------------------------------------------------------- samplers


def _oracle_diffusion(name="linear", T=100, means=(0.2,), s=0.3, num_classes=0):
    sched = NoiseSchedule.make(name, T)
    return Diffusion(GaussianOracle(sched, means, s, num_classes), sched)


def test_ddim_with_eta_1_and_all_steps_is_the_ddpm_step():
    d = _oracle_diffusion(T=50, s=0.5)
    x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    assert d.plan("ddim", 50) == d.plan("ddpm", None)  # the same transitions t → t − 1
    for t in (50, 20, 2, 1):
        eps = d.eps(x, torch.full((64,), t), None, None)
        for seed in (0, 1):  # the same z: equal outputs for two z ⇒ equal means and variances
            a = d.ddpm_step(x, t, eps, torch.Generator().manual_seed(seed))
            b = d.ddim_step(x, t, t - 1, eps, 1.0, torch.Generator().manual_seed(seed))
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ddim_eta_0_is_deterministic_given_x_T_and_seeds_reproduce():
    d = _oracle_diffusion(T=50)
    x = torch.randn(8, 1, 4, 4)
    eps = d.eps(x, torch.full((8,), 30), None, None)
    a = d.ddim_step(x, 30, 10, eps, 0.0, torch.Generator().manual_seed(0))
    b = d.ddim_step(x, 30, 10, eps, 0.0, torch.Generator().manual_seed(99))
    assert torch.equal(a, b)
    for sampler, steps in (("ddpm", None), ("ddim", 10)):
        one, _ = d.sample(16, sampler=sampler, steps=steps, seed=3, chunk_size=5)
        two, _ = d.sample(16, sampler=sampler, steps=steps, seed=3, chunk_size=5)
        other, _ = d.sample(16, sampler=sampler, steps=steps, seed=4, chunk_size=5)
        assert torch.equal(one, two) and not torch.equal(one, other)


def _sampler_moments(ab, transitions, mu, s, ddpm):
    """Mean and variance of a sampler's output for x_0 ~ N(μ, s²) and the exact ε*, derived
    in closed form: every step is affine in x plus Gaussian noise, starting at x_T ~ N(0, 1)."""
    m, v = 0.0, 1.0
    for t, u in transitions:
        k = math.sqrt(ab[t]) * s**2 / (ab[t] * s**2 + 1 - ab[t])  # x̂_0 = E[x_0 | x_t]
        a0, a1 = mu * (1 - k * math.sqrt(ab[t])), k  # x̂_0 = a0 + a1 x
        if ddpm:  # posterior mean c0 x̂_0 + c1 x, variance β̃ (Ho et al. eq. 7)
            beta = 1 - ab[t] / ab[u]
            c0 = math.sqrt(ab[u]) * beta / (1 - ab[t])
            c1 = math.sqrt(1 - beta) * (1 - ab[u]) / (1 - ab[t])
            slope, icpt, noise = c0 * a1 + c1, c0 * a0, (1 - ab[u]) / (1 - ab[t]) * beta
        else:  # η = 0: √ᾱ_s x̂_0 + √(1 − ᾱ_s) ε̂, ε̂ = (x − √ᾱ_t x̂_0) / √(1 − ᾱ_t)
            e1 = (1 - math.sqrt(ab[t]) * a1) / math.sqrt(1 - ab[t])
            e0 = -math.sqrt(ab[t]) * a0 / math.sqrt(1 - ab[t])
            slope = math.sqrt(ab[u]) * a1 + math.sqrt(1 - ab[u]) * e1
            icpt, noise = math.sqrt(ab[u]) * a0 + math.sqrt(1 - ab[u]) * e0, 0.0
        m, v = slope * m + icpt, slope**2 * v + noise
    return m, v


@pytest.mark.parametrize(
    ("T", "sampler", "steps"),
    [(100, "ddpm", None), (100, "ddim", 10), (100, "ddim", 100), (1000, "ddpm", None)],
)
def test_samplers_give_the_derived_distribution_with_the_exact_noise_predictor(T, sampler, steps):
    """x_0 ~ N(μ_y, 0.2²) per class: the samples of class y have the mean and variance the
    closed-form recursion predicts; with T = 1000 steps, the data's own (fewer steps shrink the
    spread: DDPM's β̃ leaves out the uncertainty of x̂_0, and DDIM's steps are chords)."""
    means, s = (-0.3, 0.3), 0.2
    d = _oracle_diffusion(T=T, means=means, s=s, num_classes=2)
    n = 2000  # 1000 images × 16 pixels per class
    y = torch.arange(n) % 2
    x, _ = d.sample(n, sampler=sampler, steps=steps, classes=y, seed=0, chunk_size=1000)
    ab = d.schedule.alpha_bars.tolist()
    for c, mu in enumerate(means):
        m, v = _sampler_moments(ab, d.plan(sampler, steps), mu, s, sampler == "ddpm")
        got = x[y == c].flatten().double()
        k = got.numel()
        assert float(got.mean()) == pytest.approx(m, abs=5 * math.sqrt(v / k))
        assert float(got.var()) == pytest.approx(v, abs=5 * v * math.sqrt(2 / (k - 1)))
        assert m == pytest.approx(mu, abs=0.01)
        if T == 1000:
            assert float(got.std()) == pytest.approx(s, rel=0.03)
        else:
            assert math.sqrt(v) < 0.95 * s  # the shrinkage the recursion predicts is real


def test_guidance_scale_1_is_the_conditional_model_and_0_the_null_class():
    d = _oracle_diffusion(means=(-0.4, 0.3, 0.0), num_classes=2)
    x, t, y = torch.randn(4, 1, 4, 4), torch.full((4,), 50), torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(d.eps(x, t, y, 1.0), d.eps(x, t, y, None))
    torch.testing.assert_close(d.eps(x, t, y, 0.0), d.eps(x, t, None, None))


def test_ddim_timesteps_sub_sequence():
    assert ddim_timesteps(100, 100) == list(range(1, 101))
    taus = ddim_timesteps(1000, 50)
    assert len(taus) == 50 and taus[-1] == 1000 and taus[0] == 1
    assert all(b > a for a, b in zip(taus, taus[1:], strict=False))
    assert ddim_timesteps(10, 1) == [10]


def test_keep_records_the_chain_and_the_strip_starts_from_noise():
    d = _oracle_diffusion(T=30)
    x0, kept = d.sample(6, keep=[30, 10, 1], seed=0)
    assert set(kept) == {30, 10, 1} and kept[30].shape == (6, 1, 4, 4)
    assert float(kept[30].std()) == pytest.approx(1.0, abs=0.35)  # x_T ~ N(0, I)


# ----------------------------------------------------------------------------- the task


def _tiny_unet(T=30, **kw):
    return UNet(in_channels=1, image_size=8, num_classes=10, base_channels=8, groups=4,
                heads=2, timesteps=T, **kw)  # fmt: skip


def test_task_random_state_travels_in_its_state_dict():
    torch.manual_seed(0)
    a = DiffusionTask(_tiny_unet(), seed=5)
    batch = (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    a.training_step(batch, 0)
    b = DiffusionTask(_tiny_unet(), seed=123)
    b.load_state_dict(a.state_dict())
    la, _ = a.training_step(batch, 1)
    lb, _ = b.training_step(batch, 1)
    assert torch.equal(la, lb)
    lc, _ = a.training_step(batch, 2)
    assert not torch.equal(la, lc)  # the generator moved on


def test_task_loss_is_the_noise_mse_and_buckets_cover_every_range():
    task = DiffusionTask(_tiny_unet(T=40), buckets=4)  # zero-initialised output: ε̂ = 0
    x0 = torch.randn(40, 1, 8, 8)
    loss, _ = task.training_step((x0, torch.zeros(40, dtype=torch.long)), 0)
    assert float(loss.detach()) == pytest.approx(1.0, abs=0.1)  # E‖ε‖² per pixel = 1
    with torch.no_grad():  # as the trainer evaluates
        out = task.validation_step((x0, torch.zeros(40, dtype=torch.long)))
    counts = [int(out[f"loss_b{k}"][1]) for k in range(4)]
    assert counts == [10, 10, 10, 10]
    total = sum(float(out[f"loss_b{k}"][0]) for k in range(4))
    assert total == pytest.approx(float(out["loss"][0]))
    assert task.bucket_of(torch.tensor([1, 10, 11, 40])).tolist() == [0, 0, 1, 3]


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_are_refused_naming_the_value(monkeypatch):
    d = _oracle_diffusion(T=30, means=(0.0,) * 11, num_classes=10)
    with pytest.raises(ValueError, match="class 10 is outside 0..9"):
        d.sample(2, classes=[3, 10])
    with pytest.raises(ValueError, match="class -1"):
        d.sample(2, classes=[-1, 0])
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        d.sample(2, sampler="ddim", steps=0)
    with pytest.raises(ValueError, match="got -3"):
        d.sample(2, sampler="ddim", steps=-3)
    with pytest.raises(ValueError, match="steps=31 exceeds the schedule's T=30"):
        d.sample(2, sampler="ddim", steps=31)
    with pytest.raises(ValueError, match="number of samples must be an integer >= 1, got 0"):
        d.sample(0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        d.sample(2, sampler="euler")
    with pytest.raises(ValueError, match="linear schedule needs timesteps > 20.*got 20"):
        NoiseSchedule.make("linear", 20)
    with pytest.raises(ValueError, match="unknown noise schedule 'quadratic'"):
        NoiseSchedule.make("quadratic", 10)
    monkeypatch.setattr(diff, "_available_bytes", lambda: 10 * 2**20)  # 10 MiB free
    with pytest.raises(ValueError, match="n=1000000 samples need"):
        d.sample(1_000_000)


def test_a_denoiser_of_another_schedule_is_refused():
    model = _tiny_unet(T=30)
    with pytest.raises(ValueError, match="timesteps=30 but the sampler/task uses"):
        Diffusion(model, NoiseSchedule.make("linear", 40))
    with pytest.raises(ValueError, match="schedule='linear'"):
        DiffusionTask(model, schedule="cosine")


@pytest.mark.slow
def test_checkpoint_round_trip_and_schedule_check_at_load(tmp_path):
    from layer3_framework.train import compose, run

    overrides = [
        "experiment=ddpm_mnist",
        "data.source=synthetic",
        "data.n_train=16",
        "data.n_test=8",
        "data.batch_size=8",
        "data.eval_batch_size=8",
        "model.base_channels=8",
        "model.timesteps=30",
        "model.schedule=cosine",
        "trainer.max_steps=2",
        "trainer.log_every=1",
        "trainer.progress=false",
        "logger=jsonl",
    ]
    metrics = run(compose(overrides), tmp_path)
    assert {f"test_loss_b{k}" for k in (0, 3, 6, 8)} <= set(metrics)  # batches of 8: 8 buckets
    d = Diffusion.from_checkpoint(tmp_path, schedule="cosine", timesteps=30)
    assert (d.schedule.name, d.schedule.timesteps) == ("cosine", 30)
    assert d.model.dlstack_spec["kwargs"]["timesteps"] == 30
    with pytest.raises(ValueError, match="trained with schedule='cosine'"):
        Diffusion.from_checkpoint(tmp_path, schedule="linear")
    with pytest.raises(ValueError, match="trained with timesteps=30"):
        Diffusion.from_checkpoint(tmp_path, timesteps=1000)
