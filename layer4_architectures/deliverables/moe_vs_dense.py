"""``moe_vs_dense``: a dense GPT and a Switch GPT with the same active parameters per token,
trained on the same TinyStories tokens for the same steps through layer 3's pipeline.

The Switch GPT (:class:`~layer4_architectures.routing.moe_gpt.MoEGPT`, top-1) replaces every
block's MLP by ``n_experts`` MLPs of the same width behind a router: each token still runs one
MLP, so the FLOPs per token equal the dense model's (plus the router's E·d per layer), while the
total parameters grow by (E − 1) MLPs per block. Both runs share the seed, hence the data
windows, the optimiser, the schedule and the sizes (folders ``dense/`` and ``switch/``, each a
pipeline run with its self-describing checkpoint). Reported: validation loss (CE, nats/token)
over training, tokens/s, the dropped-token fraction (training mean and on validation), the expert
utilisation per layer over training (plot), and the step at which the Switch model first reaches
the dense model's final validation loss: the Switch paper's claim (Fedus et al. 2021, Fig. 1 and
§2.4) is that at equal compute per token the sparse model reaches a given loss in fewer steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.checkpoint import load_model
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, run


@deliverable(
    quick={
        "data_source": "real",
        "vocab_size": 2048,
        "seq_len": 64,
        "batch_size": 16,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "n_experts": 4,
        "top_k": 1,
        "capacity_factor": 1.25,
        "lr": 2.0e-3,
        "steps": 500,
        "eval_every": 100,
        "precision": "fp32",
    },
    full={
        "vocab_size": 10000,
        "seq_len": 256,
        "batch_size": 32,
        "n_head": 8,
        "n_embd": 512,
        "n_experts": 8,
        "lr": 1.0e-3,
        "steps": 10000,
        "eval_every": 1000,
        "precision": "bf16",
    },
    headline=["dense_val_loss", "switch_val_loss", "dropped_fraction"],
)
def moe_vs_dense(ctx: RunContext) -> dict[str, Any]:
    """Dense vs Switch GPT at equal active parameters: loss, speed, routing statistics."""
    cfg = ctx.config
    dense = _sub_run(ctx, "dense", ["experiment=gpt_tinystories", *_common(ctx)])
    switch = _sub_run(ctx, "switch", ["experiment=switch_tinystories", *_common(ctx), *_moe(cfg)])
    dense_model, switch_model = (
        load_model(ctx.out_dir / "dense"),
        load_model(ctx.out_dir / "switch"),
    )
    dense_curve = eval_curve(ctx.out_dir / "dense")
    switch_curve = eval_curve(ctx.out_dir / "switch")
    util = utilisation(ctx.out_dir / "switch", cfg["n_layer"], cfg["n_experts"])
    ctx.write_json("utilisation.json", {k: v.tolist() for k, v in util.items()})
    _plot_loss(ctx, dense_curve, switch_curve)
    _plot_utilisation(ctx, util)
    train_dropped = [r["train/dropped"] for r in _records(ctx.out_dir / "switch", "train/dropped")]
    reach = steps_to_reach(switch_curve, dense["test_loss"])
    tokens = cfg["batch_size"] * cfg["seq_len"]
    final_share = util["share"][-1]  # (L, E)
    return {
        "dense_val_loss": dense["test_loss"],
        "switch_val_loss": switch["test_loss"],
        "dropped_fraction": float(np.mean(train_dropped)),
        "val_dropped_fraction": switch["test_dropped"],
        "switch_better": int(switch["test_loss"] < dense["test_loss"]),
        "switch_steps_to_dense_loss": reach,
        "step_speedup": dense["step"] / reach if reach else None,
        "dense_tokens_per_second": dense["samples_per_sec"] * cfg["seq_len"],
        "switch_tokens_per_second": switch["samples_per_sec"] * cfg["seq_len"],
        "dense_train_seconds": dense["train_seconds"],
        "switch_train_seconds": switch["train_seconds"],
        "dense_params": dense_model.num_params(),
        "switch_params": switch_model.num_params(),
        "switch_active_params": switch_model.active_params(),
        "final_expert_share_min": float(final_share.min()),
        "final_expert_share_max": float(final_share.max()),
        "steps": dense["step"],
        "train_tokens": dense["step"] * tokens,
        "dense_eval_curve": dense_curve,
        "switch_eval_curve": switch_curve,
    }


def _common(ctx: RunContext) -> list[str]:
    """The one data, model-size, optimiser and trainer setting both runs share."""
    cfg = ctx.config
    log_every = max(1, cfg["eval_every"] // 4)
    return [
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.vocab_size={cfg['vocab_size']}",
        f"data.seq_len={cfg['seq_len']}",
        f"data.batch_size={cfg['batch_size']}",
        f"model.block_size={cfg['seq_len']}",
        f"model.n_layer={cfg['n_layer']}",
        f"model.n_head={cfg['n_head']}",
        f"model.n_embd={cfg['n_embd']}",
        "model.dropout=0.0",
        f"optim.lr={cfg['lr']}",
        f"trainer.max_steps={cfg['steps']}",
        f"trainer.eval_every={cfg['eval_every']}",
        f"trainer.log_every={log_every}",
        f"trainer.precision={cfg['precision']}",
        "trainer.clip_grad_norm=1.0",
        "logger=jsonl",
    ]


def _moe(cfg: dict[str, Any]) -> list[str]:
    return [
        f"model.n_experts={cfg['n_experts']}",
        f"model.top_k={cfg['top_k']}",
        f"model.capacity_factor={cfg['capacity_factor']}",
    ]


def _sub_run(ctx: RunContext, folder: str, overrides: list[str]) -> dict[str, Any]:
    return run(compose(overrides), ctx.out_dir / folder, device=ctx.device, parent_id=ctx.run_id)


def _records(run_dir: Path, key: str) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]


def eval_curve(run_dir: Path) -> list[list[float]]:
    """[[step, validation loss], …] of a sub-run (the final evaluation included)."""
    return [[r["step"], r["eval/loss"]] for r in _records(run_dir, "eval/loss")]


def steps_to_reach(curve: list[list[float]], target: float) -> int | None:
    """The first evaluated step whose loss is ≤ target (None if never)."""
    return next((int(s) for s, v in curve if v <= target), None)


def utilisation(run_dir: Path, n_layer: int, n_experts: int) -> dict[str, np.ndarray]:
    """Per logging window: ``steps`` (W,) and ``share`` (W, L, E) of assignments per expert."""
    rows = _records(run_dir, "train/util_l0_e0")
    share = np.array(
        [
            [[r[f"train/util_l{layer}_e{e}"] for e in range(n_experts)] for layer in range(n_layer)]
            for r in rows
        ]
    )  # (W, L, E)
    return {"steps": np.array([r["step"] for r in rows]), "share": share}


def _plot_loss(ctx: RunContext, dense: list[list[float]], switch: list[list[float]]) -> None:
    plt = pyplot()
    cfg = ctx.config
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(*zip(*dense, strict=True), "o-", label="dense GPT")
    label = f"Switch GPT ({cfg['n_experts']} experts, top-{cfg['top_k']})"
    ax.plot(*zip(*switch, strict=True), "s-", label=label)
    ax.set_xlabel("optimizer step (same tokens per step)")
    ax.set_ylabel("validation loss (nats / token)")
    ax.set_title("Dense vs Switch GPT, same active parameters, TinyStories sample")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "val_loss.png")


def _plot_utilisation(ctx: RunContext, util: dict[str, np.ndarray]) -> None:
    """One panel per layer: each expert's share of the assignments over training (stacked)."""
    plt = pyplot()
    steps, share = util["steps"], util["share"]  # (W,), (W, L, E)
    n_layer, n_experts = share.shape[1], share.shape[2]
    fig, axes = plt.subplots(1, n_layer, figsize=(3.2 * n_layer, 3.4), sharey=True, squeeze=False)
    for layer, ax in enumerate(axes[0]):
        labels = [f"expert {e}" for e in range(n_experts)]
        ax.stackplot(steps, share[:, layer, :].T, labels=labels, alpha=0.85)
        for j in range(1, n_experts):  # the band edges of a perfectly balanced router
            ax.axhline(j / n_experts, color="k", lw=0.6, ls=":")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("optimizer step")
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("share of routed tokens")
    axes[0][-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Switch expert utilisation over training (dotted: balanced, 1/{n_experts} each)")
    fig.tight_layout()
    ctx.savefig(fig, "expert_utilisation.png")
