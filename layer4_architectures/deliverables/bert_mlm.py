"""``bert_mlm``: BERT pre-trained by masked-language modelling on the TinyStories sample.

Trains ``experiment=bert_mlm`` through layer 3's Hydra pipeline (a sub-run in ``train/``, its
checkpoint self-describing: the model, its special ids and the tokenizer rebuild with no data on
disk), then, from the model :func:`~layer3_framework.train.load_model` rebuilds:

- **masked-token accuracy and MLM loss** on the held-out 10% of the text (every evaluation
  window, masked as the task's evaluation masks it), against the **unigram baseline**: predict
  at every masked position the most frequent label of the *training* distribution of masked
  positions (the argmax of the counts of the original tokens at the positions the masking
  selected, over the whole train stream), scored on the same held-out masked positions.
  Target: masked accuracy ≥ 3× the baseline's.
- **fill-in-the-blank** examples: one word of a held-out sentence masked, the top-5 guesses.
- **retrieval sanity** of the mean-pooled sentence embedding: for held-out sentences ``a``, is
  ``cos(e(a), e(next sentence of the same story)) > cos(e(a), e(a sentence of another story))``?
  The win rate (chance 0.5) beside a bag-of-tokens cosine's on the same triplets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.device import resolve_device
from layer3_framework.loggers import read_jsonl
from layer3_framework.train import compose, load_model, run
from layer4_architectures.sequence.bert import BERT, IGNORE, MaskedLM
from layer4_architectures.sequence.bpe import train_val_split
from layer4_architectures.sequence.data import HOLDOUT, load_tokenizer
from layer4_architectures.sequence.mlm_data import MASK_TOKEN, PAD_TOKEN, MaskedText


@deliverable(
    quick={
        "steps": 600,
        "lr": 2e-3,
        "batch_size": 16,
        "seq_len": 128,
        "vocab_size": 2048,
        "n_layer": 4,
        "n_head": 4,
        "n_embd": 128,
        "eval_batches": 20,
        "data_source": "real",
        "n_examples": 6,
        "n_triplets": 200,
    },
    full={"steps": 5000, "n_layer": 6, "n_head": 8, "n_embd": 256, "eval_batches": 0},
    headline=["masked_accuracy", "unigram_masked_accuracy", "mlm_loss"],
)
def bert_mlm(ctx: RunContext) -> dict[str, Any]:
    """MLM pre-training, masked accuracy vs the unigram baseline, examples, retrieval."""
    cfg = ctx.config
    device = str(resolve_device(ctx.device))
    sub = run(compose(_overrides(ctx)), ctx.out_dir / "train", device=device,
              parent_id=ctx.run_id)  # fmt: skip
    model = load_model(ctx.out_dir / "train", device=device)
    tok = load_tokenizer(model.dlstack_spec["preprocessing"])
    data = _data(ctx)
    task = MaskedLM(model, seed=ctx.seed).to(device)
    top = _unigram_token(task, np.asarray(data.streams["train"]), cfg["seq_len"], ctx.seed)
    scores = _evaluate(task, data.eval_loader(ctx.seed), top, device)
    val_text = train_val_split(data.text(ctx.seed), HOLDOUT)[1]
    examples = _fill_in(model, tok, _sentences(val_text), cfg["n_examples"], ctx, device)
    retrieval = _retrieval(model, tok, val_text, cfg["n_triplets"], ctx.seed, device)
    _plot(ctx, scores)
    metrics = {
        **scores,
        "accuracy_ratio": scores["masked_accuracy"] / max(scores["unigram_masked_accuracy"], 1e-12),
        "unigram_token": tok.decode([top], errors="replace"),
        "params": model.num_params(),
        "train_seconds": sub["train_seconds"],
        "pipeline_test_accuracy": sub["test_accuracy"],
        "pipeline_test_loss": sub["test_loss"],
        **retrieval,
        "fill_in_examples": examples,
        "checkpoint": sub["checkpoint"],
    }
    return metrics


def _overrides(ctx: RunContext) -> list[str]:
    cfg = ctx.config
    return [
        "experiment=bert_mlm",
        f"seed={ctx.seed}",
        f"data.source={cfg['data_source']}",
        f"data.vocab_size={cfg['vocab_size']}",
        f"data.seq_len={cfg['seq_len']}",
        f"data.batch_size={cfg['batch_size']}",
        f"model.block_size={cfg['seq_len']}",
        f"model.n_layer={cfg['n_layer']}",
        f"model.n_head={cfg['n_head']}",
        f"model.n_embd={cfg['n_embd']}",
        f"optim.lr={cfg['lr']}",
        f"trainer.max_steps={cfg['steps']}",
        f"trainer.eval_batches={cfg['eval_batches'] or 'null'}",
        "logger=jsonl",
    ]


def _data(ctx: RunContext) -> MaskedText:
    """The sub-run's data module again (its tokenizer and id streams come from the cache)."""
    from hydra.utils import instantiate

    data = instantiate(compose(_overrides(ctx)).data, _convert_="all")
    data.setup(ctx.seed)
    return data


# ----------------------------------------------------------------------------- accuracy


def _unigram_token(task: MaskedLM, train: np.ndarray, seq_len: int, seed: int) -> int:
    """The most frequent label at the positions the masking selects, over the train stream."""
    n = (len(train) // seq_len) * seq_len
    ids = torch.from_numpy(train[:n].astype(np.int64)).view(-1, seq_len)  # (N, T)
    _, labels = task.corrupt(ids, torch.Generator().manual_seed(seed + 17))
    counts = torch.bincount(labels[labels != IGNORE], minlength=task.model.vocab_size)
    return int(counts.argmax())


@torch.no_grad()
def _evaluate(task: MaskedLM, loader: Any, top: int, device: str) -> dict[str, float]:
    """Masked accuracy, MLM loss and the unigram baseline's accuracy over every held-out window,
    masked exactly as :meth:`MaskedLM.validation_step` masks them."""
    task.eval()
    loss, correct, base, n = 0.0, 0, 0, 0
    for x, _ in loader:
        inputs, labels = task.eval_corrupt(x)
        logits = task.model(inputs.to(device)).float().cpu()  # (B, T, V)
        sel = labels != IGNORE
        loss += float(F.cross_entropy(logits[sel].double(), labels[sel], reduction="sum"))
        correct += int((logits[sel].argmax(-1) == labels[sel]).sum())
        base += int((labels[sel] == top).sum())
        n += int(sel.sum())
    return {
        "masked_accuracy": correct / n,
        "unigram_masked_accuracy": base / n,
        "mlm_loss": loss / n,
        "masked_positions": n,
    }


# ----------------------------------------------------------------------------- examples


def _sentences(text: str) -> list[str]:
    """Sentences of ``text`` (ends at . ! ?), stripped, 4+ words."""
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [p.strip() for p in parts if len(p.split()) >= 4]


def _word_position(tok: Any, ids: list[int], rng: np.random.Generator) -> int | None:
    """A position holding a whole word token (a leading space and 3+ letters), if any."""
    spots = [
        i
        for i, t in enumerate(ids[1:], start=1)
        if re.fullmatch(r" [A-Za-z]{3,}", tok.decode([t], errors="replace"))
    ]
    return int(rng.choice(spots)) if spots else None


@torch.no_grad()
def _fill_in(
    model: BERT, tok: Any, sentences: list[str], n: int, ctx: RunContext, device: str
) -> list[dict]:
    """Mask one word of ``n`` held-out sentences; the model's top-5 guesses."""
    rng = np.random.default_rng(ctx.seed)
    mask_id = tok.special_tokens[MASK_TOKEN]
    out, lines = [], []
    for s in rng.permutation(sentences):
        ids = tok.encode(str(s))[: model.config.block_size]
        pos = _word_position(tok, ids, rng)
        if pos is None:
            continue
        masked = list(ids)
        masked[pos] = mask_id
        logits = model(torch.tensor([masked], device=device))[0, pos].float()
        guesses = [tok.decode([int(i)], errors="replace") for i in logits.topk(5).indices]
        shown = tok.decode(ids[:pos]) + " [MASK]" + tok.decode(ids[pos + 1 :])
        out.append({"text": shown, "answer": tok.decode([ids[pos]]), "top5": guesses})
        lines.append(f"{shown}\n  answer: {out[-1]['answer']!r}  top-5: {guesses}\n")
        if len(out) == n:
            break
    ctx.write_text("fill_in.txt", "\n".join(lines))
    return out


# ----------------------------------------------------------------------------- retrieval


def _stories(text: str) -> list[list[str]]:
    """Blank-line-separated chunks (stories or their paragraphs) with 2+ sentences; a text
    without blank lines (the synthetic one) is cut into runs of 4 sentences."""
    if "\n\n" not in text:
        flat = _sentences(text)
        return [flat[i : i + 4] for i in range(0, len(flat) - 3, 4)]
    chunks = [_sentences(c) for c in text.split("\n\n")]
    return [c for c in chunks if len(c) >= 2]


@torch.no_grad()
def _embed(model: BERT, tok: Any, sentences: list[str], device: str) -> torch.Tensor:
    """Mean-pooled embeddings (N, C) of sentences, batched with [PAD] and an attention mask."""
    pad = tok.special_tokens[PAD_TOKEN]
    ids = [tok.encode(s)[: model.config.block_size] for s in sentences]
    t = max(len(i) for i in ids)
    batch = torch.full((len(ids), t), pad, dtype=torch.long)
    mask = torch.zeros(len(ids), t, dtype=torch.long)
    for r, row in enumerate(ids):
        batch[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
    return model.sentence_embedding(batch.to(device), mask.to(device)).float().cpu()


def _bag(tok: Any, sentences: list[str]) -> torch.Tensor:
    """Bag-of-tokens count vectors (N, V): the baseline representation."""
    out = torch.zeros(len(sentences), tok.vocab_size)
    for r, s in enumerate(sentences):
        out[r] += torch.bincount(torch.tensor(tok.encode(s)), minlength=tok.vocab_size)
    return out


def _triplets(text: str, n: int, seed: int) -> list[tuple[str, str, str]]:
    """(anchor, next sentence of the same chunk, a sentence of another chunk), ``n`` of them."""
    stories = _stories(text)
    if len(stories) < 2:
        raise ValueError(f"the held-out text has {len(stories)} multi-sentence chunks; need 2+")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(len(stories), 2, replace=False)
        i = int(rng.integers(len(stories[a]) - 1))
        neg = stories[b][int(rng.integers(len(stories[b])))]
        out.append((stories[a][i], stories[a][i + 1], neg))
    return out


def _win_rate(vectors: torch.Tensor) -> float:
    """(3N, D) anchors, positives, negatives -> fraction with cos(a, p) > cos(a, n)."""
    a, p, q = vectors.view(3, -1, vectors.shape[-1])
    return float((F.cosine_similarity(a, p) > F.cosine_similarity(a, q)).double().mean())


def _retrieval(
    model: BERT, tok: Any, text: str, n: int, seed: int, device: str
) -> dict[str, float]:
    triplets = _triplets(text, n, seed)
    flat = [s for group in zip(*triplets, strict=True) for s in group]  # anchors, pos, negs
    return {
        "retrieval_win_rate": _win_rate(_embed(model, tok, flat, device)),
        "retrieval_win_rate_bag_of_tokens": _win_rate(_bag(tok, flat)),
        "retrieval_triplets": n,
    }


# ----------------------------------------------------------------------------- plot


def _plot(ctx: RunContext, scores: dict[str, float]) -> None:
    records = read_jsonl(Path(ctx.out_dir) / "train" / "metrics.jsonl")
    steps = [r["step"] for r in records if "train/loss" in r]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(steps, losses, label="train MLM loss (masked positions)")
    ax1.axhline(scores["mlm_loss"], color="C1", ls="--", label="held-out MLM loss (end)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy (nats / masked token)")
    real = ctx.config["data_source"] == "real"
    ax1.set_title("BERT MLM on the " + ("TinyStories sample" if real else "synthetic text"))
    ax1.legend(fontsize=8)
    names = ["BERT", "unigram baseline"]
    values = [scores["masked_accuracy"], scores["unigram_masked_accuracy"]]
    ax2.bar(names, values, color=["C0", "C7"])
    ax2.axhline(3 * values[1], color="C3", ls=":", label="target: 3 x baseline")
    for i, v in enumerate(values):
        ax2.text(i, v, f"{v:.3f}", ha="center", va="bottom")
    ax2.set_ylabel("held-out masked-token accuracy")
    ax2.set_title("Masked-token accuracy")
    ax2.legend(fontsize=8)
    ctx.savefig(fig, "mlm.png")
