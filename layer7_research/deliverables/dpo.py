"""``dpo``: layer 4's TinyStories GPT aligned to a positivity rule by DPO, β swept.

Preference data comes from the base model itself (:mod:`~layer7_research.alignment.preferences`):
prompts are the first ``prompt_tokens`` BPE tokens after each sentence start of the held-out 10%
of TinyStories (the GPT never trained on it), split in text order into training and held-out
prompts; each gets two continuations of ``continuation_tokens`` sampled at temperature 1, and the
positivity rule (positive minus negative lexicon words) picks the preferred one, ties dropped.

For each β the policy starts from the base (dropout off, as the frozen reference) and minimises
the DPO loss (:class:`~layer7_research.alignment.dpo.DPOTask`) with layer 3's ``Trainer`` on the
same pairs, same batches, same steps. Every ``eval_every`` steps a hook asks the judge
(:class:`~layer7_research.alignment.preferences.Judge`): on the held-out prompts, the rule's
win-rate of policy samples over reference samples (ties ½), the mean rule score, and KL(π ‖ π_ref)
of whole continuations estimated on the policy's samples; the trainer's evaluation adds the
implicit reward's held-out pair accuracy (r̂_w > r̂_l, r̂ = β log π_θ/π_ref).

Artifacts: ``dpo_curves.png`` (win-rate and KL against steps, one line per β),
``win_rate_vs_kl.png`` (the trade-off), ``table.md`` (per β, and samples before/after),
``samples.txt``, ``curves.json``. The ``rlhf`` deliverable reads this run's metrics to compare.
"""

from __future__ import annotations

from typing import Any

import torch

from layer0_math.datasets import load
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.data import build_loader
from layer3_framework.device import resolve_device
from layer3_framework.repro import seed_everything
from layer3_framework.trainer import Trainer, TrainerConfig
from layer4_architectures.sequence.bpe import train_val_split
from layer4_architectures.sequence.data import HOLDOUT, load_tokenizer
from layer4_architectures.sequence.lm_optim import adamw
from layer7_research.alignment import DPOTask, Judge, frozen, pair_dataset, without_dropout
from layer7_research.alignment.preferences import PreferenceData, preference_data
from layer7_research.artifacts import load_base, preprocessing

# the preference data's settings, shared with ``rlhf`` so that both see the same pairs
DATA = {
    "prompt_tokens": 24,
    "continuation_tokens": 40,
    "max_prompts": 2000,  # every sentence start of the held-out text (about 1,400)
    "held_out": 0.2,
    "eval_prompts": 256,  # the judge's held-out prompts
}
FULL_DATA = {"continuation_tokens": 48, "eval_prompts": 2000}
DATA_KEYS = ("prompt_tokens", "continuation_tokens", "max_prompts", "held_out")


@deliverable(
    quick={
        **DATA,
        "betas": [0.05, 0.1, 0.5],
        "headline_beta": 0.1,
        "steps": 100,
        "batch_size": 16,
        "lr": 1.0e-4,
        "clip_grad_norm": 1.0,
        "eval_every": 20,
        "shown_samples": 3,
    },
    full={
        **FULL_DATA,
        "betas": [0.02, 0.05, 0.1, 0.25, 0.5, 1.0],
        "steps": 1000,
        "batch_size": 32,
        "eval_every": 50,
    },
    headline=["win_rate", "kl", "rule_score", "reference_rule_score", "train_pairs"],
)
def dpo(ctx: RunContext) -> dict[str, Any]:
    """DPO from the base GPT at each β: win-rate and KL against steps, on the same pairs."""
    cfg = ctx.config
    base, reference, tok, data, judge = alignment_setup(ctx)
    datasets = pair_dataset(data.train, reference), pair_dataset(data.held_out, reference)
    start = JudgeEvery(judge, cfg["eval_every"]).record(0, reference)  # step 0: π = π_ref
    runs = {}
    for beta in ctx.progress(cfg["betas"], desc="beta"):
        runs[beta] = train_dpo(base, beta, datasets, judge, start, cfg, ctx.seed)
    _plot_curves(ctx, runs)
    _plot_frontier(ctx, runs)
    shown = _samples(judge, runs[cfg["headline_beta"]], cfg["shown_samples"])
    ctx.write_text("samples.txt", shown)
    ctx.write_json("curves.json", {str(b): r["curve"] for b, r in runs.items()})
    ctx.write_text("table.md", table(runs, data, judge, shown))
    return metrics(runs, data, judge, cfg)


def alignment_setup(
    ctx: RunContext,
) -> tuple[torch.nn.Module, torch.nn.Module, Any, PreferenceData, Judge]:
    """What ``dpo`` and ``rlhf`` start from: the base GPT, its frozen reference copy, the
    tokenizer, the preference pairs and the judge (same config and seed: the same for both)."""
    base = load_base("gpt", resolve_device(ctx.device))
    tok = load_tokenizer(preprocessing(base))
    reference = frozen(without_dropout(base))
    data = build_preferences(reference, tok, ctx.config, ctx.seed)
    return base, reference, tok, data, make_judge(reference, tok, data, ctx.config, ctx.seed)


def build_preferences(model: torch.nn.Module, tok: Any, cfg: dict, seed: int) -> PreferenceData:
    """The pairs of this deliverable and of ``rlhf`` (same config keys, same seed: same pairs)."""
    _, held_out_text = train_val_split(load("tinystories"), HOLDOUT)
    return preference_data(model, tok, held_out_text, **{k: cfg[k] for k in DATA_KEYS}, seed=seed)


def make_judge(reference, tok: Any, data: PreferenceData, cfg: dict, seed: int) -> Judge:
    """The judge both deliverables use: the first ``eval_prompts`` held-out prompts."""
    prompts = data.held_out_prompts[: cfg["eval_prompts"]]
    return Judge(reference, tok, prompts, cfg["continuation_tokens"], seed=seed + 2)


class JudgeEvery:
    """A trainer hook: the judge's verdict on the policy at step 0 and every ``every`` steps."""

    def __init__(self, judge: Judge, every: int) -> None:
        self.judge, self.every, self.curve = judge, every, []

    def record(self, step: int, policy: torch.nn.Module) -> dict[str, Any]:
        out = self.judge(policy)
        self.curve.append({"step": step, **{k: v for k, v in out.items() if k != "ids"}})
        self.last = out
        return self.curve[-1]

    def __call__(self, trainer: Trainer) -> None:
        if trainer.step % self.every == 0:
            self.record(trainer.step, trainer.task.policy)


def train_dpo(
    base: torch.nn.Module,
    beta: float,
    datasets: tuple[Any, Any],
    judge: Judge,
    start: dict[str, Any],
    cfg: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """One β: the policy from the base, DPO on the same batches, judged along the way."""
    seed_everything(seed)
    train_set, test_set = datasets
    policy = without_dropout(base)
    device = next(policy.parameters()).device
    optimizer = adamw(policy.parameters(), lr=cfg["lr"], weight_decay=0.0)
    hook = JudgeEvery(judge, cfg["eval_every"])
    hook.curve.append(dict(start))
    trainer = Trainer(
        DPOTask(policy, beta, judge.prompts.shape[1]),
        optimizer,
        build_loader(train_set, cfg["batch_size"], shuffle=True, seed=seed, drop_last=True),
        TrainerConfig(
            max_steps=cfg["steps"],
            clip_grad_norm=cfg["clip_grad_norm"],
            log_every=cfg["eval_every"],
            eval_every=cfg["eval_every"],
        ),
        device=device,
        eval_loader=build_loader(test_set, 64, shuffle=False, seed=seed),
        hooks=[hook],
    )
    final = trainer.fit()
    accuracy = {r["step"]: r["eval/reward_accuracy"] for r in trainer.history if "eval/loss" in r}
    for point in hook.curve:
        point["implicit_reward_accuracy"] = accuracy.get(point["step"])
    return {
        "beta": beta,
        "curve": hook.curve,
        "final": hook.curve[-1],
        "final_ids": hook.last["ids"],
        "held_out_loss": final["eval/loss"],
        "train_seconds": final["train_seconds"],
    }


# ----------------------------------------------------------------------------- reporting


def _plot_curves(ctx: RunContext, runs: dict[float, dict[str, Any]]) -> None:
    plt = pyplot()
    fig, (ax_w, ax_kl) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (beta, run) in enumerate(runs.items()):
        steps = [p["step"] for p in run["curve"]]
        ax_w.plot(
            steps, [p["win_rate"] for p in run["curve"]], "o-", color=f"C{i}", label=f"β = {beta}"
        )
        ax_kl.plot(steps, [p["kl"] for p in run["curve"]], "o-", color=f"C{i}", label=f"β = {beta}")
    ax_w.axhline(0.5, color="grey", ls="--", lw=1, label="reference (½)")
    ax_w.set_ylabel("rule win-rate vs reference samples")
    ax_kl.set_ylabel("KL(π ‖ π_ref) per continuation (nats)")
    for ax, title in ((ax_w, "preference win-rate"), (ax_kl, "distance from the reference")):
        ax.set_xlabel("DPO step")
        ax.set_title(f"{title} (held-out prompts)")
        ax.grid(alpha=0.3)
        ax.legend()
    ctx.savefig(fig, "dpo_curves.png")


def _plot_frontier(ctx: RunContext, runs: dict[float, dict[str, Any]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (beta, run) in enumerate(runs.items()):
        ax.plot(
            [p["kl"] for p in run["curve"]],
            [p["win_rate"] for p in run["curve"]],
            "o-",
            color=f"C{i}",
            label=f"β = {beta}",
        )
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xlabel("KL(π ‖ π_ref) per continuation (nats)")
    ax.set_ylabel("rule win-rate vs reference samples")
    ax.set_title("DPO: win-rate bought per nat of KL")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "win_rate_vs_kl.png")


def _samples(judge: Judge, run: dict[str, Any], n: int) -> str:
    """The first n held-out prompts: the reference's sample and the trained policy's."""
    before, after = judge.texts(judge.reference_ids, n), judge.texts(run["final_ids"], n)
    ref_scores, pol_scores = judge.reference_scores, judge.scores(run["final_ids"])
    blocks = [
        f"reference (rule {ref_scores[i]:+.0f}): {before[i]}\n"
        f"DPO β={run['beta']} (rule {pol_scores[i]:+.0f}): {after[i]}"
        for i in range(n)
    ]
    return "\n\n".join(blocks) + "\n"


def table(runs: dict[float, dict[str, Any]], data: PreferenceData, judge: Judge, shown: str) -> str:
    rows = [
        "| β | win-rate vs reference | KL(π‖π_ref) (nats) | mean rule score | held-out implicit-"
        "reward accuracy | held-out DPO loss |",
        "|---|---|---|---|---|---|",
    ]
    for beta, run in runs.items():
        f = run["final"]
        rows.append(
            f"| {beta} | {f['win_rate']:.3f} | {f['kl']:.2f} | {f['rule_score']:.3f} | "
            f"{f['implicit_reward_accuracy']:.3f} | {run['held_out_loss']:.3f} |"
        )
    return (
        f"Pairs: {len(data.train)} training, {len(data.held_out)} held-out "
        f"({data.train.n_ties + data.held_out.n_ties} ties dropped of "
        f"{data.train.n_prompts + data.held_out.n_prompts} prompts); judged on "
        f"{len(judge.prompts)} held-out prompts; reference mean rule score "
        f"{judge.reference_scores.mean():.3f}.\n\n"
        + "\n".join(rows)
        + "\n\n## Samples (held-out prompts, before ⟶ after)\n\n```\n"
        + shown
        + "```\n"
    )


def metrics(
    runs: dict[float, dict[str, Any]], data: PreferenceData, judge: Judge, cfg: dict[str, Any]
) -> dict[str, Any]:
    head = runs[cfg["headline_beta"]]["final"]
    return {
        "win_rate": head["win_rate"],
        "kl": head["kl"],
        "rule_score": head["rule_score"],
        "implicit_reward_accuracy": head["implicit_reward_accuracy"],
        "headline_beta": cfg["headline_beta"],
        "reference_rule_score": float(judge.reference_scores.mean()),
        "train_pairs": len(data.train),
        "held_out_pairs": len(data.held_out),
        "ties_dropped": data.train.n_ties + data.held_out.n_ties,
        "judge_prompts": len(judge.prompts),
        "judge_fingerprint": judge.fingerprint,
        "per_beta": {
            str(b): {
                **r["final"],
                "held_out_loss": r["held_out_loss"],
                "train_seconds": r["train_seconds"],
            }
            for b, r in runs.items()
        },
    }
