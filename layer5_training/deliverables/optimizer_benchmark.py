"""``optimizer_benchmark``: every optimiser of layer 5 on one fixed model and dataset.

The model is layer 4's char-level GPT (:class:`~layer4_architectures.sequence.gpt.GPT`: RoPE,
RMSNorm, SwiGLU, tied embeddings; 2 layers, d_model 64 in the quick preset) on tiny shakespeare
as characters (the ``shakespeare_chars`` data module, layer 4's ``TokenText``: random training
windows, the last 10% of the text held out). Every optimiser (SGD with momentum, Adam, AdamW,
RMSprop, Adagrad, Lion, Adafactor, all from scratch in ``layer5_training.optim``) trains the same
number of steps under the same warm-up + cosine schedule, at each learning rate of its own
log-spaced grid (centred where its convention puts it: SGD high, the Adam family near 1e-3, Lion
3–10× lower), over the same seeds. Each run goes through layer 3's Trainer
(:func:`~layer5_training.benchmarking.train_curves`); the data is loaded once.

Reported per optimiser: the learning rate with the lowest mean final validation loss
(cross-entropy, nats per character, on the held-out windows) and that loss's mean ± standard
deviation over seeds; the seconds per run; the optimiser-state bytes per parameter, measured from
``optimizer.state``. A run whose loss goes non-finite or above ``divergence_factor`` × its first
loss is recorded as diverged (marked on the LR-sensitivity plot, never dropped, and never chosen
as best while a learning rate with no diverged seed exists). Artifacts: ``runs.json`` (every run's
curves), ``table.md``, ``curves.png`` (train and validation loss at each best LR, mean ± std
band), ``lr_sensitivity.png`` (final validation loss vs learning rate, log x).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.device import resolve_device
from layer4_architectures.sequence.data import TokenText
from layer4_architectures.sequence.gpt import GPT
from layer5_training.benchmarking import RunResult, RunSpec, mean_std, train_curves
from layer5_training.optim.registry import OPTIMIZERS

ORDER = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "lion", "adafactor")


@deliverable(
    quick={
        "data_source": "real",
        "seq_len": 64,
        "batch_size": 16,
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 64,
        "steps": 150,
        "warmup_steps": 15,
        "eval_every": 50,
        "eval_windows": 256,
        "seeds": 3,
        "divergence_factor": 2.0,
        "optimizers": list(ORDER),
        "lrs": {
            "sgd": [0.03, 0.1, 0.3, 1.0],
            "adam": [1e-3, 3e-3, 1e-2, 3e-2],
            "adamw": [1e-3, 3e-3, 1e-2, 3e-2],
            "rmsprop": [3e-4, 1e-3, 3e-3, 1e-2],
            "adagrad": [3e-3, 1e-2, 3e-2, 1e-1],
            "lion": [3e-4, 1e-3, 3e-3, 1e-2],
            "adafactor": [0.03, 0.1, 0.3, 1.0],
        },
        "hyper": {"sgd": {"momentum": 0.9}, "adamw": {"weight_decay": 0.1}},
    },
    full={
        "n_layer": 4,
        "n_embd": 128,
        "seq_len": 128,
        "batch_size": 32,
        "steps": 2000,
        "warmup_steps": 100,
        "eval_every": 250,
        "eval_windows": 1024,
    },
    headline=["best_optimizer", *(f"{name}_best_val" for name in ORDER)],
)
def optimizer_benchmark(ctx: RunContext) -> dict[str, Any]:
    """Every optimiser × a learning-rate grid × seeds on the char GPT: best val loss per
    optimiser, curves, LR sensitivity, optimiser-state memory."""
    cfg = ctx.config
    specs = grid(cfg)
    data = _data(cfg)
    data.setup(0)
    build = _model_builder(cfg, data.model_kwargs()["vocab_size"])
    device = str(resolve_device(ctx.device))
    results = [
        train_curves(build, data, spec, device=device)
        for spec in ctx.progress(specs, total=len(specs), desc="optimizer runs")
    ]
    ctx.write_json("runs.json", [r.to_dict() for r in results])
    summary = summarise(results, cfg["optimizers"])
    ctx.write_json("summary.json", summary)
    ctx.write_text("table.md", table_markdown(summary, cfg))
    _plot_curves(ctx, results, summary)
    _plot_sensitivity(ctx, summary)
    return _metrics(summary, results)


# ----------------------------------------------------------------------------- the plan


def grid(cfg: dict[str, Any]) -> list[RunSpec]:
    """One :class:`RunSpec` per (optimiser, learning rate, seed), checked against the registry."""
    names = list(cfg["optimizers"])
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names:
        raise ValueError(f"optimizers {names}: unknown {unknown}; expected names of {OPTIMIZERS}")
    missing = [n for n in names if not cfg["lrs"].get(n)]
    if missing:
        raise ValueError(f"no learning rates for {missing}: set lrs.<name> to a list of rates")
    if cfg["seeds"] < 1:
        raise ValueError(f"seeds must be >= 1, got {cfg['seeds']}")
    return [
        RunSpec(
            optimizer=name,
            lr=float(lr),
            seed=seed,
            steps=cfg["steps"],
            hyper=dict(cfg["hyper"].get(name, {})),
            schedule="warmup_cosine",
            warmup_steps=cfg["warmup_steps"],
            divergence_factor=cfg["divergence_factor"],
            log_every=max(1, cfg["steps"] // 40),
            eval_every=cfg["eval_every"],
        )
        for name in names
        for lr in cfg["lrs"][name]
        for seed in range(cfg["seeds"])
    ]


def _data(cfg: dict[str, Any]) -> TokenText:
    """Tiny shakespeare as characters (the ``shakespeare_chars`` config's data module)."""
    return TokenText(
        name="tiny_shakespeare",
        source=cfg["data_source"],
        tokenizer="char",
        seq_len=cfg["seq_len"],
        batch_size=cfg["batch_size"],
        eval_batch_size=64,
        n_test=cfg["eval_windows"],
        drop_last=True,
    )


def _model_builder(cfg: dict[str, Any], vocab_size: int) -> Callable[[], GPT]:
    def build() -> GPT:
        return GPT(
            vocab_size,
            block_size=cfg["seq_len"],
            n_layer=cfg["n_layer"],
            n_head=cfg["n_head"],
            n_embd=cfg["n_embd"],
            dropout=0.0,
        )

    return build


# ----------------------------------------------------------------------------- the summary


def _by_lr(results: list[RunResult], name: str) -> dict[float, list[RunResult]]:
    runs: dict[float, list[RunResult]] = {}
    for r in results:
        if r.spec["optimizer"] == name:
            runs.setdefault(r.spec["lr"], []).append(r)
    return dict(sorted(runs.items()))


def _lr_row(runs: list[RunResult]) -> dict[str, Any]:
    finals = [r.final_val for r in runs]
    finite = [v for v in finals if math.isfinite(v)]
    mean, std = mean_std(finite) if finite else (math.nan, math.nan)
    return {
        "final_val": finals,
        "n_diverged": sum(r.diverged for r in runs),
        "mean": mean,
        "std": std,
        "seconds": float(np.mean([r.seconds for r in runs])),
        "state_bytes_per_param": float(np.mean([r.state_bytes_per_param for r in runs])),
    }


def summarise(results: list[RunResult], names: list[str]) -> dict[str, Any]:
    """Per optimiser: every learning rate's row and the best one, i.e. the fewest diverged seeds,
    then the lowest mean final validation loss over the seeds that finished."""
    summary: dict[str, Any] = {}
    for name in names:
        rows = {lr: _lr_row(runs) for lr, runs in _by_lr(results, name).items()}
        ranked = [lr for lr in rows if math.isfinite(rows[lr]["mean"])]
        best = min(ranked, key=lambda lr: (rows[lr]["n_diverged"], rows[lr]["mean"]), default=None)
        summary[name] = {
            "per_lr": {str(lr): row for lr, row in rows.items()},
            "lrs": list(rows),
            "best_lr": best,
            **(
                {k: rows[best][k] for k in ("mean", "std", "seconds", "n_diverged")}
                if best is not None
                else {"mean": math.nan, "std": math.nan, "seconds": math.nan, "n_diverged": None}
            ),
            "state_bytes_per_param": next(iter(rows.values()))["state_bytes_per_param"],
            "runs_diverged": sum(row["n_diverged"] for row in rows.values()),
            "runs": sum(len(row["final_val"]) for row in rows.values()),
        }
    return summary


def best_optimizer(summary: dict[str, Any]) -> str | None:
    """The optimiser whose best learning rate reached the lowest mean validation loss."""
    finite = [n for n, s in summary.items() if math.isfinite(s["mean"])]
    return min(finite, key=lambda n: summary[n]["mean"], default=None)


def table_markdown(summary: dict[str, Any], cfg: dict[str, Any]) -> str:
    head = (
        f"Char GPT ({cfg['n_layer']} layers, d {cfg['n_embd']}, seq {cfg['seq_len']}, batch "
        f"{cfg['batch_size']}) on tiny shakespeare, {cfg['steps']} steps, warm-up "
        f"{cfg['warmup_steps']} + cosine, {cfg['seeds']} seeds; validation CE in nats/char.\n\n"
        "| optimiser | best LR | best val loss (mean ± std) | s / run | state B / param "
        "| diverged runs |\n|---|---|---|---|---|---|\n"
    )
    rows = [
        f"| {name} | {s['best_lr']:.3g} | {s['mean']:.4f} ± {s['std']:.4f} | {s['seconds']:.1f} "
        f"| {s['state_bytes_per_param']:.2f} | {s['runs_diverged']} / {s['runs']} |"
        if s["best_lr"] is not None
        else f"| {name} | – | all diverged | – | {s['state_bytes_per_param']:.2f} "
        f"| {s['runs_diverged']} / {s['runs']} |"
        for name, s in summary.items()
    ]
    return head + "\n".join(rows) + "\n"


def _metrics(summary: dict[str, Any], results: list[RunResult]) -> dict[str, Any]:
    metrics: dict[str, Any] = {"best_optimizer": best_optimizer(summary)}
    for name, s in summary.items():
        metrics[f"{name}_best_val"] = s["mean"]
        metrics[f"{name}_best_val_std"] = s["std"]
        metrics[f"{name}_best_lr"] = s["best_lr"]
        metrics[f"{name}_state_bytes_per_param"] = s["state_bytes_per_param"]
        metrics[f"{name}_seconds_per_run"] = s["seconds"]
    metrics["runs"] = len(results)
    metrics["runs_diverged"] = sum(r.diverged for r in results)
    metrics["run_seconds_total"] = float(sum(r.seconds for r in results))
    return metrics


# ----------------------------------------------------------------------------- plots


def _band(runs: list[RunResult], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.asarray(getattr(runs[0], f"{key}_steps"))
    curves = np.asarray([getattr(r, f"{key}_loss") for r in runs if not r.diverged])  # (S, n)
    return steps, curves.mean(0), curves.std(0)


def _plot_curves(ctx: RunContext, results: list[RunResult], summary: dict[str, Any]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for name, s in summary.items():
        runs = [r for r in results if r.spec["optimizer"] == name and r.spec["lr"] == s["best_lr"]]
        if not [r for r in runs if not r.diverged]:
            continue
        for ax, key in zip(axes, ("train", "val"), strict=True):
            steps, mean, std = _band(runs, key)
            (line,) = ax.plot(steps, mean, label=f"{name} (lr {s['best_lr']:.3g})")
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    for ax, title in zip(axes, ("training loss (window means)", "validation loss"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.suptitle("Each optimiser at its best learning rate: mean ± std over seeds")
    axes[0].set_ylabel("cross-entropy (nats / char)")
    axes[1].legend(fontsize=8)
    ctx.savefig(fig, "curves.png")


def _plot_sensitivity(ctx: RunContext, summary: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    finals = [v for s in summary.values() for row in s["per_lr"].values() for v in row["final_val"]]
    finite = [v for v in finals if math.isfinite(v)]
    ceiling = max(finite) * 1.05 if finite else 1.0  # where a diverged run is drawn
    for name, s in summary.items():
        lrs = np.asarray(s["lrs"], dtype=float)
        rows = list(s["per_lr"].values())
        (line,) = ax.plot(lrs, [row["mean"] for row in rows], "o-", label=name)
        for lr, row in zip(lrs, rows, strict=True):
            values = np.asarray(row["final_val"], dtype=float)
            ok = np.isfinite(values)
            ax.scatter([lr] * int(ok.sum()), values[ok], s=10, color=line.get_color(), alpha=0.4)
            if (~ok).any():
                ax.scatter([lr], [ceiling], marker="x", s=60, color=line.get_color())
    ax.axhline(ceiling, color="grey", lw=0.5, ls=":")
    ax.scatter([], [], marker="x", color="grey", label="diverged seed(s), drawn at the top")
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (log)")
    ax.set_ylabel("final validation loss (nats / char)")
    ax.set_title("LR sensitivity: final val loss per seed (dots) and mean over seeds (line)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no dot hidden
    ctx.savefig(fig, "lr_sensitivity.png")
