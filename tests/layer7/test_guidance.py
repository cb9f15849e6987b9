"""Classifier-free guidance checked on a 2-D Gaussian mixture whose per-class scores are known in
closed form: layer 4's guided estimate against −σ_t ∇ₓ log[p_t(x|y)^w p_t(x)^{1−w}] by autograd
of ``torch.distributions`` log densities, the implicit classifier against Bayes' rule, guided
sampling against exact class-conditional samples, and the judging against sklearn."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score
from torch import distributions as D
from torch import nn

from layer0_math.lab import MissingArtifactError, run_deliverable
from layer4_architectures.generative.diffusion import Diffusion, NoiseSchedule
from layer4_architectures.generative.yardstick import Yardstick
from layer7_research.deliverables.guided_diffusion import (
    guided_diffusion,
    headline,
    plot_grid,
    plot_tradeoff,
    table,
)
from layer7_research.multimodal.guidance import (
    GuidedSet,
    balanced_labels,
    check_scales,
    classifier_probs,
    guided_eps_from_classifier,
    ho_salimans_scale,
    implicit_classifier_grad,
    judge,
    noise_scale,
    requested_accuracy,
    sample_sweep,
    scale_key,
)

# three components in the plane inside the sampler's clip box [−1, 1]², overlapping: a point's
# class is ambiguous near the middle
MEANS = torch.tensor([[-0.2, -0.12], [0.2, -0.12], [0.0, 0.24]], dtype=torch.float64)
PRIOR = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
S = 0.2  # each component's std per coordinate
T = 100
K = len(MEANS)


@dataclass
class ToyConfig:
    schedule: str = "linear"
    timesteps: int = T
    num_classes: int = K
    in_channels: int = 2  # x is (B, 2, 1, 1): a point of the plane as a 1×1 "image"
    image_size: int = 1


class MixtureDenoiser(nn.Module):
    """The exact ε of x_0 ~ Σ_k π_k N(μ_k, s² I), written out by hand (no autograd):
    p_t(x | k) = N(√ᾱ μ_k, v I), v = ᾱ s² + 1 − ᾱ, so ε_k = σ (x − √ᾱ μ_k) / v, and the null
    class is the mixture, ε_∅ = Σ_k r_k(x) ε_k, responsibilities r = softmax(log π_k p_t(x|k))."""

    def __init__(self, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.config = ToyConfig(schedule.name, schedule.timesteps)
        self.alpha_bars = schedule.alpha_bars
        self.dummy = nn.Parameter(torch.zeros(()))  # a device to report

    def forward(self, x, t, y=None):
        b = x.shape[0]
        xf = x.double().view(b, 1, 2)  # (B, 1, 2)
        ab = self.alpha_bars[t].view(b, 1, 1)
        v, sigma = ab * S**2 + 1 - ab, (1 - ab).sqrt()
        eps_k = sigma * (xf - ab.sqrt() * MEANS) / v  # (B, K, 2)
        log_w = PRIOR.log() - (xf - ab.sqrt() * MEANS).pow(2).sum(-1) / (2 * v[..., 0])  # (B, K)
        eps_null = (log_w.softmax(-1)[..., None] * eps_k).sum(1)  # (B, 2)
        y = torch.full((b,), K) if y is None else y
        cond = eps_k[torch.arange(b), y.clamp(max=K - 1)]  # (B, 2)
        out = torch.where((y == K)[:, None], eps_null, cond)
        return out.view_as(x).to(x.dtype)


def toy() -> Diffusion:
    schedule = NoiseSchedule.make("linear", T)
    return Diffusion(MixtureDenoiser(schedule), schedule)


def log_densities(x, t, schedule):
    """log p_t(x | k) (B, K) and log p_t(x) (B,) from torch.distributions."""
    ab = schedule.alpha_bars[t].view(-1, 1, 1)  # (B, 1, 1)
    scale = (ab * S**2 + 1 - ab).sqrt().expand(-1, K, 2)
    comp = D.Independent(D.Normal(ab.sqrt() * MEANS, scale), 1)  # batch (B, K), event 2
    log_cond = comp.log_prob(x.view(-1, 1, 2))  # (B, K)
    mix = D.MixtureSameFamily(D.Categorical(PRIOR), D.Independent(D.Normal(
        ab.sqrt() * MEANS, scale), 1))  # fmt: skip
    return log_cond, mix.log_prob(x.view(-1, 2))


def reference_eps(x, t, y, w, schedule):
    """−σ_t ∇ₓ log[p_t(x|y)^w p_t(x)^{1−w}] by autograd: (B, 2, 1, 1)."""
    x = x.detach().double().requires_grad_(True)
    log_cond, log_marg = log_densities(x, t, schedule)
    tilted = w * log_cond[torch.arange(len(y)), y] + (1 - w) * log_marg
    (grad,) = torch.autograd.grad(tilted.sum(), x)
    return -noise_scale(schedule, t, x) * grad


@pytest.fixture
def one_thread():
    """The toy's ops are tiny: on a shared 2-core machine threads only add contention (8x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def points(b=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 2, 1, 1, generator=g, dtype=torch.float64)
    t = torch.randint(1, T + 1, (b,), generator=g)
    y = torch.randint(0, K, (b,), generator=g)
    return x, t, y


# ----------------------------------------------------------------------------- the estimate


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
def test_guided_eps_is_minus_sigma_times_score_of_tilted_density(w):
    d, (x, t, y) = toy(), points()
    got = d.eps(x.float(), t, y, w).double()
    want = reference_eps(x, t, y, w, d.schedule)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_w1_is_the_conditional_estimate_and_w0_the_unconditional():
    d, (x, t, y) = toy(), points(seed=1)
    xf = x.float()
    cond, marg = reference_eps(x, t, y, 1.0, d.schedule), reference_eps(x, t, y, 0.0, d.schedule)
    torch.testing.assert_close(d.eps(xf, t, y, 1.0).double(), cond, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(d.eps(xf, t, y, 0.0).double(), marg, atol=2e-5, rtol=1e-4)
    # and they differ where the classes overlap, so the two checks above are not one check
    assert (cond - marg).abs().max() > 0.05


def test_ho_salimans_parametrisation_is_the_same_estimate():
    d, (x, t, y) = toy(), points(seed=2)
    xf = x.float()
    eps_y, eps_null = d.eps(xf, t, y, None), d.eps(xf, t, torch.full_like(y, K), None)
    for w in (0.0, 1.0, 3.0, 7.5):
        wp = ho_salimans_scale(w)
        torch.testing.assert_close((1 + wp) * eps_y - wp * eps_null, d.eps(xf, t, y, w))
    assert ho_salimans_scale(1.0) == 0.0


# ----------------------------------------------------------------------------- implicit classifier


def test_implicit_classifier_grad_is_bayes_posterior_score():
    d, (x, t, y) = toy(), points(seed=3)
    xr = x.detach().requires_grad_(True)
    log_cond, log_marg = log_densities(xr, t, d.schedule)
    log_post = PRIOR.log()[y] + log_cond[torch.arange(len(y)), y] - log_marg  # log p_t(y | x)
    (want,) = torch.autograd.grad(log_post.sum(), xr)
    got = implicit_classifier_grad(d, x.float(), t, y).double()
    # ε / σ amplifies float32 round-off where σ_t is small: compare at the float32 precision
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 8.0])
def test_guided_estimate_in_classifier_form_equals_layer4_estimate(w):
    d, (x, t, y) = toy(), points(seed=4)
    xf = x.float()
    grad = implicit_classifier_grad(d, xf, t, y)
    sigma = noise_scale(d.schedule, t, xf)
    got = guided_eps_from_classifier(d.eps(xf, t, y, None), grad, sigma, w)
    torch.testing.assert_close(got, d.eps(xf, t, y, w), atol=1e-5, rtol=1e-4)


def test_noise_scale_is_sqrt_one_minus_alpha_bar():
    schedule = NoiseSchedule.make("cosine", 50)
    t = torch.tensor([1, 25, 50])
    want = np.sqrt(1 - np.cumprod(1 - schedule.betas.numpy())[[1, 25, 50]])
    np.testing.assert_allclose(
        noise_scale(schedule, t, torch.zeros(3, 1, dtype=torch.float64)).flatten(), want
    )
    with pytest.raises(ValueError, match="timesteps must be in"):
        noise_scale(schedule, torch.tensor([0]), torch.zeros(1, 1))


# ----------------------------------------------------------------------------- guided sampling


def nearest_component(x):
    """(N,) index of the nearest mean (the Bayes classifier of equal-variance components)."""
    return torch.cdist(x.double().view(-1, 2), MEANS).argmin(1)


def posterior(x, y):
    """The exact p_0(y | x) of the data mixture at points x (N, 2): (N,)."""
    log_w = PRIOR.log() - (x.view(-1, 1, 2) - MEANS).pow(2).sum(-1) / (2 * S**2)  # (N, K)
    return log_w.softmax(-1)[torch.arange(len(y)), y]


def exact_conditional(n=200_000, seed=0):
    """Monte Carlo over x_0 ~ p(x | y), y uniform: the share nearest to μ_y and the mean p(y | x)
    (what w = 1, sampling p(x | y), must reproduce)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=g)
    x = MEANS[y] + S * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return float((nearest_component(x) == y).double().mean()), float(posterior(x, y).mean())


def test_large_w_concentrates_on_the_requested_component(one_thread):
    d, n = toy(), 900
    sets = {s.w: s for s in sample_sweep(d, [0.0, 1.0, 2.0, 8.0], n, classes=range(K), seed=0)}
    xs = {w: (s.images * 2 - 1).double().view(-1, 2) for w, s in sets.items()}  # model space
    y = sets[0.0].labels
    hits = {w: float((nearest_component(x) == y).double().mean()) for w, x in xs.items()}
    post = {w: float(posterior(x, y).mean()) for w, x in xs.items()}
    # w = 0 ignores the request: a sample lands nearest the requested mean one time in K
    assert abs(hits[0.0] - 1 / K) < 0.06, hits
    # w = 1 samples p(x | y): hit rate and mean posterior of exact conditional samples
    exact_hits, exact_post = exact_conditional()
    assert abs(hits[1.0] - exact_hits) < 0.05 and abs(post[1.0] - exact_post) < 0.04, (hits, post)
    # w > 1: the requested class ever less ambiguous; at w = 8 nearly always the requested one
    assert post[0.0] < post[1.0] < post[2.0] < post[8.0], post
    assert hits[8.0] > 0.97 and post[8.0] > 0.95, (hits, post)
    # ... because p(x | y) p(y | x)^(w−1) pushes samples away from the other classes: each class's
    # samples sit beyond its mean, farther from the mixture's centre than the mean itself
    centre = PRIOR @ MEANS
    for k in range(K):
        pushed = (xs[8.0][y == k].mean(0) - centre).norm()
        assert pushed > 1.5 * (MEANS[k] - centre).norm(), (k, pushed)


@pytest.mark.parametrize(("sampler", "steps", "eta"), [("ddpm", None, 0.0), ("ddim", 10, 1.0)])
def test_sweep_reuses_the_seed_and_its_shortcuts_are_the_formula(one_thread, sampler, steps, eta):
    d, n, how = toy(), 30, {"sampler": sampler, "steps": steps, "eta": eta}
    sets = sample_sweep(d, [0.0, 1.0, 2.0], n, classes=[2, 0], seed=5, chunk_size=12, **how)
    y = balanced_labels(n, [2, 0])
    assert all(torch.equal(s.labels, y) for s in sets)
    for s in sets:  # each w is layer 4's sampler at that w (the guided pair) from the same seed
        x, _ = d.sample(n, classes=y, guidance=s.w, seed=5, chunk_size=12, **how)
        torch.testing.assert_close(s.images * 2 - 1, x.clamp(-1, 1), atol=1e-4, rtol=0)
    assert not torch.allclose(sets[0].images, sets[2].images)  # and w changes the samples


def test_balanced_labels_and_bad_requests():
    y = balanced_labels(23, [3, 1, 7])
    assert y[:4].tolist() == [3, 1, 7, 3]
    counts = np.bincount(y.numpy(), minlength=8)[[3, 1, 7]]
    assert counts.max() - counts.min() <= 1 and counts.sum() == 23
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        balanced_labels(0, [1])
    with pytest.raises(ValueError, match="distinct and non-empty"):
        balanced_labels(5, [1, 1])
    with pytest.raises(ValueError, match="finite and distinct"):
        check_scales([1.0, float("nan")])
    with pytest.raises(ValueError, match="finite and distinct"):
        check_scales([])
    with pytest.raises(ValueError, match="outside 0..2"):
        sample_sweep(toy(), [1.0], 4, classes=[0, 5])
    assert scale_key(0.5) == "w0p5" and scale_key(8.0) == "w8"


def test_an_unconditional_denoiser_has_no_implicit_classifier():
    schedule = NoiseSchedule.make("linear", T)
    model = MixtureDenoiser(schedule)
    model.config.num_classes = 0
    with pytest.raises(ValueError, match="unconditional"):
        implicit_classifier_grad(Diffusion(model, schedule), *points()[:3])


# ----------------------------------------------------------------------------- judging


def tiny_yardstick(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    g = torch.Generator().manual_seed(seed)
    ref, pool = torch.rand(80, 1, 28, 28, generator=g), torch.rand(80, 1, 28, 28, generator=g)
    return Yardstick(model=net, reference=ref, real_pool=pool, mean=0.2, std=0.5)


def test_requested_accuracy_is_sklearn_recall_per_class():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(200, 10, generator=g).softmax(1)
    labels = torch.randint(0, 10, (200,), generator=g)
    acc, per_class = requested_accuracy(probs, labels)
    pred = probs.argmax(1).numpy()
    assert acc == pytest.approx(float((pred == labels.numpy()).mean()))
    want = recall_score(labels.numpy(), pred, average=None, labels=np.unique(labels.numpy()))
    np.testing.assert_allclose(per_class, want)
    with pytest.raises(ValueError, match="3 predictions for 4 labels"):
        requested_accuracy(probs[:3], labels[:4])


def test_judge_uses_the_classifier_as_the_yardstick_sees_it():
    ys = tiny_yardstick()
    images = torch.rand(40, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the classifier's head on the yardstick's features: another path
        want = ys.extractor.head(ys.features(images).float()).softmax(1).double()
    torch.testing.assert_close(classifier_probs(ys, images), want, atol=1e-6, rtol=1e-5)
    labels = want.argmax(1)
    labels[:10] = (labels[:10] + 1) % 10  # a quarter asked for another class
    row = judge(ys, GuidedSet(2.0, images, labels, 1.5))
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["fid"] == pytest.approx(ys.score(images)["fid"])
    assert row["w"] == 2.0 and row["n"] == 40 and row["seconds"] == 1.5


# ----------------------------------------------------------------------------- the deliverable


def fake_rows():
    rows = []
    for w, fid, acc in [(0.0, 9.0, 0.1), (1.0, 4.0, 0.9), (2.0, 3.0, 0.95), (8.0, 20.0, 1.0)]:
        rows.append(
            {"w": w, "fid": fid, "accuracy": acc, "kid": fid / 1000, "kid_std": 1e-3,
             "confident_share": acc, "class_entropy": 1 - w / 100, "seconds": 2.0}
        )  # fmt: skip
    return rows


def test_headline_picks_best_fid_and_the_ends_of_the_sweep():
    h = headline(fake_rows(), {"fid_floor": 1.0})
    assert (h["best_fid_w"], h["best_fid"]) == (2.0, 3.0)
    assert (h["accuracy_w1"], h["wmax"], h["accuracy_wmax"], h["fid_wmax"]) == (0.9, 8.0, 1.0, 20.0)
    text = table(fake_rows(), {"fid_floor": 1.0, "kid_floor": 0.0}, {
        "n_per_scale": 10, "sampler": "ddim", "steps": 20, "eta": 1.0})  # fmt: skip
    assert "| 2 | 1 | 0.950 | 3.00 |" in text and "floor at the same n: FID 1.00" in text


def test_deliverable_figures_are_written(tmp_path):
    from layer0_math.lab import RunContext

    ctx = RunContext("layer7_research", "guided_diffusion", "quick", 0, {}, tmp_path)
    rows = fake_rows()
    plot_tradeoff(ctx, rows, {"fid_floor": 1.0})
    labels = balanced_labels(20, range(10))
    sets = [GuidedSet(r["w"], torch.rand(20, 1, 28, 28), labels, 1.0) for r in rows]
    plot_grid(ctx, sets, list(range(10)))
    assert (tmp_path / "tradeoff.png").stat().st_size > 10_000
    assert (tmp_path / "sample_grid.png").stat().st_size > 10_000


def test_missing_ddpm_names_make_layer4(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSTACK_RUNS", str(tmp_path / "empty"))
    with pytest.raises(MissingArtifactError, match="make layer4"):
        run_deliverable(guided_diffusion, runs_dir=tmp_path / "out")


def test_scales_without_the_conditional_row_are_refused(tmp_path):
    with pytest.raises(ValueError, match="must include w = 1"):
        run_deliverable(guided_diffusion, overrides={"scales": [0.0, 2.0]}, runs_dir=tmp_path)
