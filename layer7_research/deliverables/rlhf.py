"""``rlhf``: a Bradley–Terry reward model on the ``dpo`` pairs, then PPO against it; vs DPO.

The same preference data as ``dpo`` (same prompts, pairs and seed:
:func:`~layer7_research.deliverables.dpo.build_preferences`). Two stages, InstructGPT's recipe at
the scale of a 1M-parameter GPT:

1. **Reward model** (:class:`~layer7_research.alignment.reward.RewardModel`: the GPT's trunk and a
   scalar head on the last token), trained with the Bradley–Terry loss through layer 3's
   ``Trainer``; its held-out pair accuracy is how often it agrees with the rule on pairs it never
   saw. It is then normalised (scores of the training continuations: mean 0, std 1).
2. **PPO** (:mod:`~layer7_research.alignment.ppo`): the policy starts from the base; the value
   function from the reward model; each iteration samples a continuation for a batch of
   training prompts, rewards it with the RM score at the last token minus β_KL·k1 per token,
   computes GAE advantages and takes ``epochs`` passes of clipped-surrogate + value updates.

Tracked per iteration: the RM score of the rollouts (what PPO optimises), their *true* rule
score (what we want: a gap between the two is reward hacking), and their KL to the reference;
every ``eval_every`` iterations the same judge as ``dpo`` (held-out prompts, win-rate vs
reference samples, mean rule score, KL(π ‖ π_ref)). The final table sets PPO beside the latest
``dpo`` run's headline β when it was judged on the same prompts.

Artifacts: ``rlhf_curves.png`` (RM score and rule score, KL, win-rate against iterations),
``reward_model.png`` (its training loss and held-out accuracy), ``table.md`` (reward model,
PPO vs DPO, samples before/after), ``samples.txt``, ``curves.json``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
import torch

from layer0_math.lab import MissingArtifactError, RunContext, deliverable, latest_run_dir, pyplot
from layer3_framework.data import build_loader
from layer3_framework.repro import seed_everything
from layer3_framework.trainer import Trainer, TrainerConfig
from layer4_architectures.sequence.lm_optim import adamw
from layer7_research.alignment import (
    Judge,
    PPOConfig,
    RewardModel,
    RewardTask,
    frozen,
    normalise_reward,
    ppo_update,
    rollout,
    without_dropout,
)
from layer7_research.alignment.preferences import PreferenceData
from layer7_research.deliverables.dpo import DATA, FULL_DATA, alignment_setup

PPO_KEYS = ("kl_coef", "gamma", "lam", "clip", "epochs", "minibatch", "vf_coef", "max_grad_norm")


@deliverable(
    quick={
        **DATA,
        "rm_steps": 150,
        "rm_batch_size": 16,
        "rm_lr": 3.0e-4,
        "rm_eval_every": 50,
        "iterations": 30,
        "rollout_batch": 32,
        "lr": 1.0e-4,
        "kl_coef": 0.05,
        "gamma": 1.0,
        "lam": 0.95,
        "clip": 0.2,
        "epochs": 4,
        "minibatch": 16,
        "vf_coef": 0.5,
        "max_grad_norm": 1.0,
        "eval_every": 5,
        "shown_samples": 3,
    },
    full={
        **FULL_DATA,
        "rm_steps": 1000,
        "rm_batch_size": 32,
        "rm_eval_every": 100,
        "iterations": 300,
        "rollout_batch": 128,
        "minibatch": 32,
        "eval_every": 25,
    },
    headline=["rm_held_out_accuracy", "win_rate", "rule_score", "kl", "dpo_win_rate"],
)
def rlhf(ctx: RunContext) -> dict[str, Any]:
    """Reward model, then PPO; judged by the rule like DPO, and compared with it."""
    cfg = ctx.config
    base, reference, tok, data, judge = alignment_setup(ctx)
    reward_model, rm = train_reward_model(base, data, cfg, ctx.seed)
    ppo = train_ppo(base, reference, reward_model, data, judge, cfg, ctx)
    dpo_run = latest_dpo(judge)
    _plot_reward_model(ctx, rm)
    _plot_ppo(ctx, ppo)
    shown = _samples(judge, ppo["final_ids"], cfg["shown_samples"])
    ctx.write_text("samples.txt", shown)
    ctx.write_json("curves.json", {"reward_model": rm["curve"], "ppo": ppo["curve"]})
    ctx.write_text("table.md", table(rm, ppo, dpo_run, judge, data, shown))
    return metrics(rm, ppo, dpo_run, judge, data)


# ----------------------------------------------------------------------------- reward model


def train_reward_model(
    base: torch.nn.Module, data: PreferenceData, cfg: dict[str, Any], seed: int
) -> tuple[RewardModel, dict[str, Any]]:
    """Bradley–Terry on the training pairs with layer 3's Trainer; held-out pair accuracy."""
    seed_everything(seed)
    model = RewardModel(base)
    train = torch.utils.data.TensorDataset(data.train.chosen, data.train.rejected)
    test = torch.utils.data.TensorDataset(data.held_out.chosen, data.held_out.rejected)
    trainer = Trainer(
        RewardTask(model),
        adamw(model.parameters(), lr=cfg["rm_lr"], weight_decay=0.0),
        build_loader(train, cfg["rm_batch_size"], shuffle=True, seed=seed, drop_last=True),
        TrainerConfig(
            max_steps=cfg["rm_steps"],
            clip_grad_norm=1.0,
            log_every=max(1, cfg["rm_eval_every"] // 5),
            eval_every=cfg["rm_eval_every"],
        ),
        device=next(model.parameters()).device,
        eval_loader=build_loader(test, 64, shuffle=False, seed=seed),
    )
    final = trainer.fit()
    frozen(model)
    stats = normalise_reward(model, torch.cat([data.train.chosen, data.train.rejected]))
    curve = [
        {k: r[k] for k in r if k in ("step", "train/loss", "train/accuracy", "eval/loss",
                                     "eval/accuracy")}
        for r in trainer.history
    ]  # fmt: skip
    return model, {
        "held_out_accuracy": final["eval/accuracy"],
        "held_out_loss": final["eval/loss"],
        "train_accuracy": final["train/accuracy"],
        "curve": curve,
        "normalised_from": stats,
        "train_seconds": final["train_seconds"],
    }


# ----------------------------------------------------------------------------- PPO


def train_ppo(
    base: torch.nn.Module,
    reference: torch.nn.Module,
    reward_model: RewardModel,
    data: PreferenceData,
    judge: Judge,
    cfg: dict[str, Any],
    ctx: RunContext,
) -> dict[str, Any]:
    """PPO from the base against the reward model on the training prompts, judged as it goes.

    A loop of our own (rollout, then several epochs on it): see :mod:`~layer7_research.
    alignment.ppo` for why this is not layer 3's Trainer."""
    seed_everything(ctx.seed)
    policy = without_dropout(base)
    value = copy.deepcopy(reward_model).requires_grad_(True)  # V(s) starts as the RM
    ppo_cfg = PPOConfig(cfg["continuation_tokens"], **{k: cfg[k] for k in PPO_KEYS})
    params = [*policy.parameters(), *value.parameters()]
    optimizer = adamw(params, lr=cfg["lr"], weight_decay=0.0)
    device = next(policy.parameters()).device
    prompts = data.train.prompts  # (N, P)
    gen = torch.Generator().manual_seed(ctx.seed)
    order = torch.randperm(len(prompts), generator=gen).repeat(
        1 + cfg["iterations"] * cfg["rollout_batch"] // len(prompts)
    )  # a fresh batch of prompts every iteration, cycling through the shuffled set
    curve, evals = [], [{"iteration": 0, **_verdict(judge, reference, reward_model)}]
    for it in ctx.progress(range(1, cfg["iterations"] + 1), desc="ppo"):
        batch = order[(it - 1) * cfg["rollout_batch"] : it * cfg["rollout_batch"]]
        ro = rollout(policy, reference, value, reward_model, prompts[batch].to(device), ppo_cfg,
                     seed=ctx.seed * 10_000 + it)  # fmt: skip
        logs = ppo_update(policy, value, optimizer, ro, ppo_cfg, gen)
        curve.append({
            "iteration": it,
            "rm_score": float(ro.score.mean()),
            "rule_score": float(judge.scores(ro.ids.cpu()).mean()),
            "rollout_kl": float(ro.kl.mean()),
            **logs,
        })  # fmt: skip
        if it % cfg["eval_every"] == 0 or it == cfg["iterations"]:
            evals.append({"iteration": it, **_verdict(judge, policy, reward_model)})
    final_ids = evals[-1].pop("ids")
    evals[0].pop("ids")
    return {"curve": curve, "evals": evals, "final": evals[-1], "final_ids": final_ids}


@torch.no_grad()
def _verdict(judge: Judge, policy: torch.nn.Module, reward_model: RewardModel) -> dict[str, Any]:
    """The judge's verdict, plus how well the RM's scores track the rule on these samples
    (a correlation that falls as PPO trains is the signature of reward hacking)."""
    out = judge(policy)
    device = next(reward_model.parameters()).device
    rm = torch.cat([reward_model.score(b.to(device)).cpu() for b in out["ids"].split(128)])
    rule = judge.scores(out["ids"])
    corr = float(np.corrcoef(rm.numpy(), rule)[0, 1]) if rule.std() > 0 else float("nan")
    return {**out, "rm_score": float(rm.mean()), "rm_rule_correlation": corr}


# ----------------------------------------------------------------------------- DPO's figures


def latest_dpo(judge: Judge) -> dict[str, Any] | None:
    """The newest ok ``dpo`` run's headline figures, or None when there is none."""
    try:
        run = latest_run_dir("layer7_research", "dpo")
    except MissingArtifactError:
        return None
    m = json.loads((run / "metrics.json").read_text())
    return {
        "run": str(run),
        "beta": m["headline_beta"],
        "win_rate": m["win_rate"],
        "rule_score": m["rule_score"],
        "kl": m["kl"],
        "same_prompts": m.get("judge_fingerprint") == judge.fingerprint,
    }


# ----------------------------------------------------------------------------- reporting


def _plot_reward_model(ctx: RunContext, rm: dict[str, Any]) -> None:
    plt = pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, ax, what in (("loss", ax_l, "Bradley–Terry loss"), ("accuracy", ax_a, "accuracy")):
        for split, style, name in (("train", "-", "training"), ("eval", "o-", "held-out")):
            pts = [(r["step"], r[f"{split}/{key}"]) for r in rm["curve"] if f"{split}/{key}" in r]
            ax.plot(*zip(*pts, strict=True), style, label=f"{name} pairs")
        ax.set_xlabel("reward-model step")
        ax.set_ylabel(what)
        ax.set_title(f"reward model: {what}")
        ax.grid(alpha=0.3)
        ax.legend()
    ax_a.axhline(0.5, color="grey", ls="--", lw=1)
    ctx.savefig(fig, "reward_model.png")


def _plot_ppo(ctx: RunContext, ppo: dict[str, Any]) -> None:
    plt = pyplot()
    fig, (ax_r, ax_kl, ax_w) = plt.subplots(1, 3, figsize=(15, 4.2))
    its = [c["iteration"] for c in ppo["curve"]]
    ax_r.plot(its, [c["rm_score"] for c in ppo["curve"]], label="reward-model score (optimised)")
    ax_r.plot(its, [c["rule_score"] for c in ppo["curve"]], label="true rule score")
    ax_r.set_ylabel("mean over the rollout batch")
    ax_r.set_title("reward vs the rule (training rollouts)")
    ax_kl.plot(its, [c["rollout_kl"] for c in ppo["curve"]], label="rollouts (Σ k1)")
    ev = ppo["evals"]
    ax_kl.plot([e["iteration"] for e in ev], [e["kl"] for e in ev], "o-",
               label="held-out (exact per-token KL, Σ)")  # fmt: skip
    ax_kl.set_ylabel("KL(π ‖ π_ref) per continuation (nats)")
    ax_kl.set_title("distance from the reference")
    ax_w.plot([e["iteration"] for e in ev], [e["win_rate"] for e in ev], "o-",
              label="PPO vs reference samples")  # fmt: skip
    ax_w.axhline(0.5, color="grey", ls="--", lw=1, label="reference (½)")
    ax_w.set_ylabel("rule win-rate (held-out prompts)")
    ax_w.set_title("preference win-rate")
    for ax in (ax_r, ax_kl, ax_w):
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
        ax.legend()
    ctx.savefig(fig, "rlhf_curves.png")


def _samples(judge: Judge, final_ids: torch.Tensor, n: int) -> str:
    before, after = judge.texts(judge.reference_ids, n), judge.texts(final_ids, n)
    ref, pol = judge.reference_scores, judge.scores(final_ids)
    return (
        "\n\n".join(
            f"reference (rule {ref[i]:+.0f}): {before[i]}\nPPO (rule {pol[i]:+.0f}): {after[i]}"
            for i in range(n)
        )
        + "\n"
    )


def _comparison(ppo: dict[str, Any], dpo_run: dict[str, Any] | None, judge: Judge) -> list[str]:
    f = ppo["final"]
    rows = [
        "| policy | win-rate vs reference | mean rule score | KL(π‖π_ref) (nats) | source |",
        "|---|---|---|---|---|",
        f"| reference (base GPT) | 0.5 | {judge.reference_scores.mean():.3f} | 0 | this run |",
        f"| PPO (RLHF) | {f['win_rate']:.3f} | {f['rule_score']:.3f} | {f['kl']:.2f} | this run |",
    ]
    if dpo_run is None:
        rows.append("| DPO | missing | missing | missing | no finished `dpo` run: run it first |")
    else:
        note = "" if dpo_run["same_prompts"] else " (judged on OTHER prompts: not comparable)"
        rows.append(
            f"| DPO β={dpo_run['beta']} | {dpo_run['win_rate']:.3f} | "
            f"{dpo_run['rule_score']:.3f} | {dpo_run['kl']:.2f} | `{dpo_run['run']}`{note} |"
        )
    return rows


def table(rm, ppo, dpo_run, judge: Judge, data: PreferenceData, shown: str) -> str:
    start, f = ppo["evals"][0], ppo["final"]
    return "\n".join([
        f"Pairs: {len(data.train)} training, {len(data.held_out)} held-out; judged on "
        f"{len(judge.prompts)} held-out prompts.",
        "",
        "| reward model | value |",
        "|---|---|",
        f"| held-out pair accuracy (agreement with the rule) | {rm['held_out_accuracy']:.3f} |",
        f"| training pair accuracy | {rm['train_accuracy']:.3f} |",
        f"| held-out Bradley–Terry loss | {rm['held_out_loss']:.3f} |",
        f"| corr(RM score, rule) on reference samples | {start['rm_rule_correlation']:.3f} |",
        f"| corr(RM score, rule) on PPO samples | {f['rm_rule_correlation']:.3f} |",
        f"| RM score (normalised) on held-out samples: reference → PPO | "
        f"{start['rm_score']:.2f} → {f['rm_score']:.2f} |",
        "",
        *_comparison(ppo, dpo_run, judge),
        "",
        "## Samples (held-out prompts, before ⟶ after)",
        "",
        "```",
        shown + "```",
        "",
    ])  # fmt: skip


def metrics(rm, ppo, dpo_run, judge: Judge, data: PreferenceData) -> dict[str, Any]:
    start, f = ppo["evals"][0], ppo["final"]
    dpo_same = dpo_run is not None and dpo_run["same_prompts"]
    return {
        "rm_held_out_accuracy": rm["held_out_accuracy"],
        "rm_train_accuracy": rm["train_accuracy"],
        "win_rate": f["win_rate"],
        "rule_score": f["rule_score"],
        "kl": f["kl"],
        "rm_score_start": start["rm_score"],
        "rm_score_end": f["rm_score"],
        "rm_rule_correlation_start": start["rm_rule_correlation"],
        "rm_rule_correlation_end": f["rm_rule_correlation"],
        "reference_rule_score": float(judge.reference_scores.mean()),
        "dpo_win_rate": dpo_run["win_rate"] if dpo_same else None,
        "dpo_rule_score": dpo_run["rule_score"] if dpo_same else None,
        "dpo_kl": dpo_run["kl"] if dpo_same else None,
        "dpo_run": dpo_run["run"] if dpo_run else None,
        "train_pairs": len(data.train),
        "judge_fingerprint": judge.fingerprint,
        "rm_train_seconds": rm["train_seconds"],
    }
