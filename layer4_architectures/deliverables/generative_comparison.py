"""``generative_comparison``: the VAE, the GAN and the diffusion model under one yardstick.

Reads the newest good runs of ``vae_mnist`` (``samples_vae.npy``), ``gan_mnist``
(``samples_gan.npy``) and ``ddpm_mnist`` (``samples_ddpm.npy``, ``samples_ddim50.npy``,
``samples_ddim10.npy``), each (N, 1, 28, 28) float32 in [0, 1]; takes the same ``n`` images of
every set (a fixed random subset when a set is larger) and scores them with one
:class:`~layer4_architectures.generative.yardstick.Yardstick`: FID and KID against n MNIST test
images, confident share and class entropy; beside them the real-vs-real floor at the same n.
Parameters, training seconds and sampling seconds per 1,000 images come from each run's
``metrics.json``. A missing run is a :class:`MissingArtifactError` naming ``make layer4``.

FID is biased upward at finite n (the floor is > 0 and falls as n grows), so FIDs are only
comparable at equal n; KID is unbiased (its floor is ≈ 0 at any n).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.lab import MissingArtifactError, RunContext, deliverable, latest_run_dir, pyplot
from layer4_architectures.generative.yardstick import Yardstick, image_grid

LAYER = "layer4_architectures"
# name shown, deliverable, samples file, the metrics.json key of its sampling seconds per 1,000
MODELS = (
    ("VAE", "vae_mnist", "samples_vae.npy", "sample_seconds_per_1000"),
    ("GAN", "gan_mnist", "samples_gan.npy", "sample_seconds_per_1000"),
    ("DDPM", "ddpm_mnist", "samples_ddpm.npy", "sample_seconds_per_1000_ddpm"),
    ("DDIM-50", "ddpm_mnist", "samples_ddim50.npy", "sample_seconds_per_1000_ddim50"),
    ("DDIM-10", "ddpm_mnist", "samples_ddim10.npy", "sample_seconds_per_1000_ddim10"),
)
NOTE = (
    "FID is biased upward at finite n (two real sets score the floor, not 0; the floor falls as "
    "n grows): compare FIDs only at equal n, against the floor. KID is unbiased: its floor is "
    "≈ 0 at any n (it may be slightly negative). Features: the feature_classifier MNIST CNN, "
    "not Inception-v3, so no figure here is comparable with published FIDs. DDPM/DDIM samples "
    "are class-conditional (one tenth of each digit asked for); the VAE and GAN are not."
)


@deliverable(quick={"n": 1000}, full={"n": 10000}, headline=["ddpm_fid", "gan_fid", "vae_fid"])
def generative_comparison(ctx: RunContext) -> dict[str, Any]:
    """Score every model's samples at the same n; one table, one figure of grids."""
    n = ctx.config["n"]
    stick = Yardstick.from_runs(device=ctx.device)
    floor = stick.floor(n)
    rows = []
    for name, deliverable_name, file, seconds_key in MODELS:
        run = latest_run_dir(LAYER, deliverable_name)
        samples = load_samples(run / file, n, ctx.seed)
        metrics = _read_metrics(run)
        score = stick.score(samples)
        rows.append(
            {
                "model": name,
                "run": str(run),
                **{k: score[k] for k in ("fid", "kid", "kid_std", "confident_share")},
                "class_entropy": score["class_entropy"],
                "class_histogram": score["class_histogram"],
                "parameters": metrics.get("parameters"),
                "train_seconds": metrics.get("train_seconds"),
                "sample_seconds_per_1000": metrics.get(seconds_key),
                "samples": samples[:64],
            }
        )
    ctx.write_json("comparison.json", {"n": n, "floor": floor, "rows": _plain(rows)})
    ctx.write_text("comparison.md", _table(rows, floor, n, stick.classifier_accuracy))
    _plot(ctx, rows, floor, n)
    out: dict[str, Any] = {
        "n": n,
        **floor,
        "feature_classifier_accuracy": stick.classifier_accuracy,
    }
    for r in rows:
        key = r["model"].lower().replace("-", "")
        out.update({f"{key}_{k}": r[k] for k in ("fid", "kid", "confident_share", "class_entropy")})
    return out


def load_samples(path: Path, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` images of a saved (N, 1, 28, 28) sample file: all when N = n, else a fixed random
    subset (files may be ordered by class)."""
    if not path.exists():
        has = sorted(p.name for p in path.parent.iterdir()) if path.parent.is_dir() else []
        raise MissingArtifactError(
            f"{path} does not exist (the run has: {has}); rerun `make layer4` "
            f"(or `python -m {LAYER} {path.parent.parent.name} --force`)"
        )
    x = np.load(path)
    if x.shape[0] < n:
        raise ValueError(
            f"{path} holds {x.shape[0]} samples but the comparison needs n={n} of every model: "
            "rerun it with at least n samples, or lower n"
        )
    if x.shape[0] > n:
        x = x[np.sort(np.random.default_rng(seed).permutation(x.shape[0])[:n])]
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _read_metrics(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "samples"} for r in rows]


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _table(rows: list[dict[str, Any]], floor: dict[str, float], n: int, acc: float) -> str:
    lines = [
        f"# Generative models on MNIST, one yardstick (n = {n} samples each)",
        "",
        "| model | FID | KID | confident share | class entropy | parameters | training s "
        "| sampling s / 1,000 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['fid']:.2f} | {r['kid']:.3f} ± {r['kid_std']:.3f} | "
            f"{r['confident_share']:.3f} | {r['class_entropy']:.3f} | "
            f"{_fmt(r['parameters'], ',')} | {_fmt(r['train_seconds'], '.0f')} | "
            f"{_fmt(r['sample_seconds_per_1000'], '.2f')} |"
        )
    lines += [
        f"| real vs real (floor) | {floor['fid_floor']:.2f} | {floor['kid_floor']:.3f} | | | | | |",
        "",
        f"Feature classifier test accuracy {acc:.4f}. {NOTE}",
        "",
    ]
    return "\n".join(lines)


def _plot(ctx: RunContext, rows: list[dict[str, Any]], floor: dict[str, float], n: int) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 4.0))
    for ax, r in zip(axes, rows, strict=True):
        ax.imshow(image_grid(r["samples"], 8), cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"{r['model']}\nFID {r['fid']:.2f} (floor {floor['fid_floor']:.2f})\n"
            f"KID {r['kid']:.3f} (floor {floor['kid_floor']:.3f})\n"
            f"confident {r['confident_share']:.2f}, entropy {r['class_entropy']:.2f}",
            fontsize=9,
        )
        ax.axis("off")
    fig.suptitle(
        f"Samples under one yardstick (n = {n} each vs {n} MNIST test digits); "
        "FID is biased upward at small n, KID is unbiased",
        fontsize=10,
    )
    ctx.savefig(fig, "comparison_grids.png")
