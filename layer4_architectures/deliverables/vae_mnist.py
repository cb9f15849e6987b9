"""``vae_mnist``: the 784-400-20 Bernoulli VAE of PyTorch's examples, trained through layer 3's
pipeline on MNIST in [0, 1]; its test negative ELBO (anchor: ≈ 105.6 nats after 10 epochs in
PyTorch's example; target here ≤ 105), the importance-weighted bound on log p(x) (k ≥ 100) on the
test set, samples scored by the yardstick beside the real-vs-real floor, interpolations, and a
2-D latent map from a *separate* VAE with a 2-D latent (same architecture, K = 2): the test
digits' posterior means coloured by class, and the decoder's images over a grid of z.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.datasets import load_mnist
from layer0_math.files import atomic_file
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, load_model, run
from layer4_architectures.generative.vae import VAE, iwae_log_likelihood
from layer4_architectures.generative.yardstick import Yardstick, scored_title, show_grid

MNIST_TRAIN = 60_000
SAMPLES_FILE = "samples_vae.npy"


@deliverable(
    quick={
        "epochs": 10,
        "epochs_2d": 3,
        "lr": 2.0e-3,
        "batch_size": 128,
        "iwae_k": 100,
        "iwae_n": None,
        "n_samples": 1000,
        "data_source": "real",
        "n_train": None,
    },
    full={"epochs": 50, "epochs_2d": 20, "iwae_k": 1000, "n_samples": 10000},
    headline=["test_neg_elbo", "iwae_nll"],
)
def vae_mnist(ctx: RunContext) -> dict[str, Any]:
    """Train the VAE (and a 2-D one), bound log p(x), sample, score and plot."""
    cfg = ctx.config
    stick = Yardstick.from_runs(device=ctx.device)  # first: a missing classifier fails fast
    main = _train(ctx, "vae", cfg["epochs"], [])
    latent2d = _train(ctx, "vae2d", cfg["epochs_2d"], ["model.latent_dim=2"])
    model = load_model(ctx.out_dir / "vae", device=ctx.device)
    model2d = load_model(ctx.out_dir / "vae2d", device=ctx.device)
    x_test, y_test = _test_set(cfg["iwae_n"])
    torch.manual_seed(ctx.seed)
    iwae = _iwae_nll(ctx, model, x_test, cfg["iwae_k"])
    samples, sample_seconds = _samples(model, cfg["n_samples"], ctx.seed)
    with atomic_file(ctx.path(SAMPLES_FILE)) as f:  # (N, 1, 28, 28) float32 in [0, 1]
        np.save(f, samples.numpy())
    score, floor = stick.score(samples), stick.floor(cfg["n_samples"])
    ctx.write_json("yardstick.json", {"score": score, "floor": floor})
    _plot_curves(ctx, ctx.out_dir / "vae" / "metrics.jsonl")
    _plot_samples(ctx, samples[:100], score, floor)
    _plot_reconstructions(ctx, model, x_test[:16])
    _plot_interpolations(ctx, model, x_test, y_test)
    _plot_latent_map(ctx, model2d, x_test, y_test)
    return {
        "test_neg_elbo": main["test_loss"],
        "test_recon": main["test_recon"],
        "test_kl": main["test_kl"],
        "iwae_nll": iwae,
        "iwae_k": cfg["iwae_k"],
        "latent2d_test_neg_elbo": latent2d["test_loss"],
        **stick.headline(score, floor),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": main["train_seconds"],
        "sample_seconds_per_1000": sample_seconds,
        "samples_file": SAMPLES_FILE,
    }


def _train(ctx: RunContext, folder: str, epochs: int, extra: list[str]) -> dict[str, Any]:
    cfg = ctx.config
    n_train = cfg["n_train"] or MNIST_TRAIN
    steps = max(1, epochs * (n_train // cfg["batch_size"]))
    overrides = [
        "experiment=vae_mnist",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.batch_size={cfg['batch_size']}",
        f"optim.lr={cfg['lr']}",
        f"trainer.max_steps={steps}",
        f"trainer.log_every={max(1, steps // 100)}",
        "logger=jsonl",
        *extra,
    ]
    if cfg["n_train"] is not None:
        overrides += [f"data.n_train={cfg['n_train']}", "data.n_test=500"]
    return run(compose(overrides), ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)


def _test_set(n: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """The MNIST test set (its first ``n`` images) as float (N, 1, 28, 28) in [0, 1]."""
    x, y = load_mnist("test")
    x, y = x[:n], y[:n]
    return torch.from_numpy(x.astype(np.float32) / 255.0)[:, None], y


def _iwae_nll(ctx: RunContext, model: VAE, x: torch.Tensor, k: int) -> float:
    """−L_k averaged over ``x`` (nats), in batches of 500 images."""
    dev = next(model.parameters()).device
    chunks = torch.split(x, 500)
    total = 0.0
    for chunk in ctx.progress(chunks, total=len(chunks), desc=f"IWAE k={k}"):
        total += float(iwae_log_likelihood(model, chunk.to(dev), k).double().sum())
    return -total / x.shape[0]


def _samples(model: VAE, n: int, seed: int) -> tuple[torch.Tensor, float]:
    """n decoder-mean images and the seconds per 1,000 of them."""
    start = time.perf_counter()
    samples = model.sample(n, torch.Generator().manual_seed(seed)).cpu()
    return samples, (time.perf_counter() - start) * 1000 / n


def _plot_curves(ctx: RunContext, jsonl: Path) -> None:
    plt = pyplot()
    records = [r for r in read_jsonl(jsonl) if "train/recon" in r]
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(steps, [r["train/loss"] for r in records], label="−ELBO (recon + KL)")
    ax[0].plot(steps, [r["train/recon"] for r in records], label="reconstruction −log p(x|z)")
    ax[0].set_ylim(top=min(250, max(r["train/loss"] for r in records)))
    ax[1].plot(steps, [r["train/kl"] for r in records], color="C2")
    ax[0].set(xlabel="step", ylabel="nats per image", title="VAE training loss")
    ax[1].set(xlabel="step", ylabel="nats per image", title="KL(q(z|x) ‖ N(0, I))")
    ax[0].legend()
    ctx.savefig(fig, "training_curves.png")


def _plot_samples(ctx: RunContext, samples: torch.Tensor, score: dict, floor: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6.6))
    show_grid(
        ax, samples, 10, scored_title("VAE samples, z ~ N(0, I) (decoder means)", score, floor)
    )
    ctx.savefig(fig, "samples.png")


def _plot_reconstructions(ctx: RunContext, model: VAE, x: torch.Tensor) -> None:
    plt = pyplot()
    dev = next(model.parameters()).device
    with torch.no_grad():
        mu, _ = model.encode(x.to(dev))
        recon = model.decode_images(mu).cpu()
    fig, ax = plt.subplots(figsize=(8, 1.6))
    show_grid(ax, torch.cat([x, recon]), 16, "test digits (top) and decode(μ(x)) (bottom)")
    ctx.savefig(fig, "reconstructions.png")


def _plot_interpolations(ctx: RunContext, model: VAE, x: torch.Tensor, y: np.ndarray) -> None:
    """Decoded images along z = (1 − t) μ(a) + t μ(b) between test digits of classes c, c + 1."""
    plt = pyplot()
    dev = next(model.parameters()).device
    firsts = [int(np.flatnonzero(y == c)[0]) for c in range(10)]
    t = torch.linspace(0, 1, 10, device=dev)[:, None]  # (10, 1)
    rows = []
    with torch.no_grad():
        mu, _ = model.encode(x[firsts].to(dev))  # (10, K)
        for c in range(0, 10, 2):
            a, b = mu[c], mu[(c + 1) % 10]
            rows.append(model.decode_images((1 - t) * a + t * b).cpu())
    fig, ax = plt.subplots(figsize=(6, 3.4))
    show_grid(ax, torch.cat(rows), 10, "latent interpolations 0→1, 2→3, 4→5, 6→7, 8→9")
    ctx.savefig(fig, "interpolations.png")


def _plot_latent_map(ctx: RunContext, model: VAE, x: torch.Tensor, y: np.ndarray) -> None:
    """The 2-D VAE: posterior means of the test digits by class, and decode(z) over a grid."""
    plt = pyplot()
    dev = next(model.parameters()).device
    with torch.no_grad():
        mu = model.encode(x.to(dev))[0].cpu().numpy()  # (N, 2)
        side = torch.linspace(-2.5, 2.5, 15)
        zz = torch.cartesian_prod(side.flip(0), side)[:, [1, 0]]  # rows: z2 top-down, cols: z1
        grid = model.decode_images(zz.to(dev)).cpu()
    fig, ax = plt.subplots(1, 2, figsize=(12, 5.5))
    points = ax[0].scatter(mu[:, 0], mu[:, 1], c=y, cmap="tab10", s=2, vmin=-0.5, vmax=9.5)
    fig.colorbar(points, ax=ax[0], ticks=range(10), label="digit")
    ax[0].set(xlabel="μ₁", ylabel="μ₂", title="2-D-latent VAE: test digits' posterior means")
    show_grid(ax[1], grid, 15, "decode(z) for z on a grid in [−2.5, 2.5]² (z₁ →, z₂ ↑)")
    ctx.savefig(fig, "latent_map_2d.png")
