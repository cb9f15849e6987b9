"""``rag``: retrieval-augmented generation over the TinyStories sample with layer 4's models.

1. **Questions** (:mod:`~layer7_research.retrieval.questions`): cloze questions from the
   sample's passages, a rare word of one sentence blanked, in two variants over the same
   questions: ``cloze`` (the sentence stays in its gold passage: retrieval can match it and the
   GPT can copy the word) and ``removed`` (the sentence taken out of the passage in the corpus:
   retrieval must match the story, the GPT must find the word elsewhere in the passage).
2. **Retrieval**: BM25 written here; dense retrieval with layer 4's BERT (mean-pooled, normalised
   embeddings; the query is the sentence with ``[MASK]`` in the blank) by exact numpy search, a
   FAISS flat index (checked equal) and an IVF index (its overlap with exact search over
   ``nprobe``); a hybrid by reciprocal-rank fusion. recall@1/5/10 of the gold passage, and how
   often the answer word is in the top-k passages at all.
3. **Generation**: layer 4's GPT answers each question greedily with the top-1 BM25, dense or
   hybrid passage, the gold passage (oracle) or no passage; answer accuracy of each, the answer's
   log-likelihood and how often its first token is in the GPT's top 5.

Both models come from ``runs/`` (:func:`~layer7_research.artifacts.load_base`); they were trained
on the first 90% of the same sample, so questions from the held-out 10% are reported apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from layer0_math.datasets import load_tinystories
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework.device import resolve_device
from layer4_architectures.sequence.bpe import train_val_split
from layer4_architectures.sequence.data import HOLDOUT, load_tokenizer
from layer7_research.artifacts import load_base, preprocessing
from layer7_research.retrieval import BM25, tokenize
from layer7_research.retrieval import dense as dn
from layer7_research.retrieval.questions import Question, build_questions
from layer7_research.retrieval.rag import (
    answer,
    answer_logprob,
    is_correct,
    recall_at_k,
    reciprocal_rank_fusion,
)

RETRIEVERS = ("bm25", "dense", "hybrid")
CONDITIONS = (*RETRIEVERS, "gold", "none")
VARIANTS = {"cloze": False, "removed": True}  # name -> remove_sentence


@dataclass
class Models:
    """Layer 4's BERT (retriever) and GPT (generator), each with its checkpoint's tokenizer."""

    bert: Any
    bert_tok: Any
    gpt: Any
    gpt_tok: Any

    @classmethod
    def load(cls, device: Any) -> Models:
        bert, gpt = load_base("bert", device), load_base("gpt", device)
        return cls(
            bert, load_tokenizer(preprocessing(bert)), gpt, load_tokenizer(preprocessing(gpt))
        )


@deliverable(
    quick={
        "n_questions": 400,
        "max_df": 5,
        "min_prefix_words": 3,
        "ks": [1, 5, 10],
        "depth": 100,
        "nlist": 64,
        "nprobes": [1, 2, 4, 8, 16, 32, 64],
        "max_new_tokens": 4,
        "embed_batch": 64,
        "n_examples": 8,
    },
    full={"n_questions": 5000, "max_df": 10},
    headline=["cloze.bm25_recall@1", "cloze.dense_recall@1", "cloze.acc_gold", "cloze.acc_none",
              "removed.bm25_recall@1", "removed.acc_gold"],
)  # fmt: skip
def rag(ctx: RunContext) -> dict[str, Any]:
    """recall@k of BM25, dense and hybrid retrieval; GPT answer accuracy per passage source; for
    the plain cloze (the sentence in its passage) and with the sentence removed."""
    text = load_tinystories()
    models = Models.load(resolve_device(ctx.device))
    metrics: dict[str, Any] = {}
    recalls, tables = {}, []
    for name, remove in VARIANTS.items():
        m, recalls[name], ann = _variant(ctx, text, models, name, remove)
        metrics |= {f"{name}.{k}": v for k, v in m.items()}
        tables.append(_table(name, m, ctx.config["ks"]))
        if name == "cloze":
            metrics |= ann["metrics"]
            tables.append(_ann_table(ann, metrics))
            _plot_ann(ctx, ann)
    _plot_recall(ctx, recalls, metrics["cloze.n_questions"])
    ctx.write_text("table.md", "\n".join(tables))
    return metrics


def _variant(
    ctx: RunContext, text: str, models: Models, name: str, remove: bool
) -> tuple[dict[str, Any], dict[str, dict[int, float]], dict[str, Any]]:
    """One question-set variant: retrieval, recall@k, generation; its metrics and recall curves."""
    cfg = ctx.config
    questions, corpus = build_questions(
        text, cfg["n_questions"], ctx.seed, cfg["max_df"], cfg["min_prefix_words"], remove
    )
    gold = np.array([q.gold for q in questions])
    ranked, ann = _retrieve(ctx, models, questions, corpus)
    recall = {n: recall_at_k(r, gold, range(1, cfg["depth"] + 1)) for n, r in ranked.items()}
    hits = {n: _answer_in_top_k(r, questions, corpus, cfg["ks"]) for n, r in ranked.items()}
    preds, logprob, rank = _generate(ctx, models, questions, corpus, ranked)
    correct = {c: _correct(preds[c], questions) for c in CONDITIONS}
    heldout = _heldout(text, questions)
    _write_examples(ctx, name, questions, corpus, ranked, preds)
    metrics = {
        "n_questions": len(questions),
        "n_passages": len(corpus),
        "n_heldout_questions": int(heldout.sum()),
        "answer_df_1": int(sum(q.answer_df == 1 for q in questions)),
        **{f"{n}_recall@{k}": recall[n][k] for n in RETRIEVERS for k in cfg["ks"]},
        **{f"{n}_answer_in_top{k}": hits[n][k] for n in RETRIEVERS for k in cfg["ks"]},
        **{f"acc_{c}": float(correct[c].mean()) for c in CONDITIONS},
        **{f"top5_{c}": float((rank[c] < 5).mean()) for c in CONDITIONS},
        **{f"logprob_{c}": float(logprob[c].mean()) for c in CONDITIONS},
        **{
            f"acc_{c}_heldout": float(correct[c][heldout].mean()) if heldout.any() else None
            for c in CONDITIONS
        },  # fmt: skip
    }
    return metrics, recall, ann


# ----------------------------------------------------------------------------- retrieval


def _retrieve(
    ctx: RunContext, models: Models, questions: list[Question], corpus: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Ranked passage ids (Q, depth) of BM25, dense (exact) and RRF; the ANN study."""
    cfg = ctx.config
    bm25 = BM25.from_texts(corpus)
    by_bm25 = np.stack([bm25.top_k(tokenize(q.text), cfg["depth"]) for q in questions])
    passages, queries = _embeddings(ctx, models, questions, corpus)
    start = time.perf_counter()
    by_dense = dn.exact_search(queries, passages, cfg["depth"])
    exact_s = time.perf_counter() - start
    ann = _ann_study(ctx, passages, queries, by_dense, exact_s)
    hybrid = reciprocal_rank_fusion([by_bm25, by_dense], cfg["depth"])
    return {"bm25": by_bm25, "dense": by_dense, "hybrid": hybrid}, ann


def _embeddings(
    ctx: RunContext, models: Models, questions: list[Question], corpus: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised BERT embeddings of the passages (N, C) and the [MASK]ed questions (Q, C)."""
    bert = models.bert
    device = next(bert.parameters()).device
    kw = {"pad_id": bert.pad_id, "batch_size": ctx.config["embed_batch"], "device": device}
    passages = dn.embed_texts(bert, models.bert_tok, corpus, progress=ctx.progress, **kw)
    queries = dn.embed_texts(bert, models.bert_tok, [q.masked for q in questions], **kw)
    return passages, queries


def _ann_study(
    ctx: RunContext, passages: np.ndarray, queries: np.ndarray, exact: np.ndarray, exact_s: float
) -> dict[str, Any]:
    """FAISS flat == exact; IVF's overlap@10 with exact search and its time, over nprobe."""
    cfg = ctx.config
    k = max(cfg["ks"])
    _, flat_ids = dn.faiss_search(dn.flat_index(passages), queries, k)
    ivf = dn.ivf_index(passages, cfg["nlist"], ctx.seed)
    rows = []
    for nprobe in cfg["nprobes"]:
        start = time.perf_counter()
        _, ids = dn.faiss_search(ivf, queries, k, nprobe)
        seconds = time.perf_counter() - start
        rows.append({"nprobe": nprobe, "overlap": dn.overlap_at_k(exact[:, :k], ids),
                     "ms_per_query": 1e3 * seconds / len(queries)})  # fmt: skip
    metrics = {
        "faiss_flat_equals_exact": float((flat_ids == exact[:, :k]).all(axis=1).mean()),
        "exact_ms_per_query": 1e3 * exact_s / len(queries),
        **{f"ivf_overlap@{k}_nprobe{r['nprobe']}": r["overlap"] for r in rows},
    }
    return {"rows": rows, "k": k, "nlist": cfg["nlist"], "metrics": metrics}


def _answer_in_top_k(
    ranked: np.ndarray, questions: list[Question], corpus: list[str], ks: list[int]
) -> dict[int, float]:
    """The fraction of questions whose answer word is in one of the top-k passages."""
    words = [set(tokenize(p)) for p in corpus]
    out = {}
    for k in ks:
        hit = [
            any(q.answer.lower() in words[d] for d in row[:k])
            for q, row in zip(questions, ranked, strict=True)
        ]
        out[k] = float(np.mean(hit))
    return out


# ----------------------------------------------------------------------------- generation


def _generate(
    ctx: RunContext,
    models: Models,
    questions: list[Question],
    corpus: list[str],
    ranked: dict[str, np.ndarray],
) -> tuple[dict[str, list[str]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per passage condition: the GPT's greedy answers, the answer's log-probability (nats) and
    its first token's rank, for every question."""
    gpt, tok, n_new = models.gpt, models.gpt_tok, ctx.config["max_new_tokens"]
    preds: dict[str, list[str]] = {c: [] for c in CONDITIONS}
    scored: dict[str, list[tuple[float, int]]] = {c: [] for c in CONDITIONS}
    for i, q in enumerate(ctx.progress(questions, desc="answer")):
        context = {n: corpus[int(ranked[n][i, 0])] for n in RETRIEVERS}
        context |= {"gold": corpus[q.gold], "none": None}
        for c in CONDITIONS:
            preds[c].append(answer(gpt, tok, context[c], q.prefix, n_new))
            scored[c].append(answer_logprob(gpt, tok, context[c], q.prefix, q.answer))
    logprob = {c: np.array([s[0] for s in scored[c]]) for c in CONDITIONS}
    rank = {c: np.array([s[1] for s in scored[c]]) for c in CONDITIONS}
    return preds, logprob, rank


def _correct(preds: list[str], questions: list[Question]) -> np.ndarray:
    return np.array([is_correct(p, q.answer) for p, q in zip(preds, questions, strict=True)])


def _heldout(text: str, questions: list[Question]) -> np.ndarray:
    """Which questions come from the held-out 10% of the text layer 4's models never trained on."""
    val = " ".join(train_val_split(text, HOLDOUT)[1].split())
    return np.array([f"{q.prefix} {q.answer}" in val for q in questions])


# ----------------------------------------------------------------------------- reporting


def _plot_recall(ctx: RunContext, recalls: dict[str, dict[str, dict[int, float]]], n: int) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"cloze": "-", "removed": "--"}
    for variant, recall in recalls.items():
        for colour, name in zip(("C0", "C1", "C2"), RETRIEVERS, strict=True):
            ks = sorted(recall[name])[:20]
            ax.plot(ks, [recall[name][k] for k in ks], styles[variant], color=colour, marker="o",
                    ms=2.5, label=f"{name}, {variant}")  # fmt: skip
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("recall@k of the gold passage")
    ax.set_title(f"Retrieval over the TinyStories sample ({n} cloze questions)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ctx.savefig(fig, "recall_at_k.png")


def _plot_ann(ctx: RunContext, ann: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    rows = ann["rows"]
    ax.plot([r["nprobe"] for r in rows], [r["overlap"] for r in rows], "o-", label="IVF")
    ax.axhline(1.0, color="grey", ls="--", label="exact (flat)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"nprobe (cells scanned of nlist = {ann['nlist']})")
    ax.set_ylabel(f"overlap@{ann['k']} with exact search")
    ax.set_title("FAISS IVF: approximate vs exact BERT retrieval")
    ax.grid(alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "ivf_recall.png")


def _table(variant: str, m: dict[str, Any], ks: list[int]) -> str:
    what = {"cloze": "the question's sentence stays in its passage",
            "removed": "the question's sentence removed from its passage"}[variant]  # fmt: skip
    lines = [f"## {variant}: {what} ({m['n_questions']} questions, {m['n_passages']} passages)",
             "", "| retriever | " + " | ".join(f"recall@{k}" for k in ks) + " | "
             + " | ".join(f"answer in top {k}" for k in ks) + " |",
             "|---" * (1 + 2 * len(ks)) + "|"]  # fmt: skip
    for n in RETRIEVERS:
        cells = [f"{m[f'{n}_recall@{k}']:.3f}" for k in ks]
        cells += [f"{m[f'{n}_answer_in_top{k}']:.3f}" for k in ks]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "| passage in the GPT's prompt | answer accuracy (greedy word) | held-out "
              f"({m['n_heldout_questions']} q.) | answer's 1st token in top 5 | "
              "mean log p(answer) (nats) |", "|---|---|---|---|---|"]  # fmt: skip
    for c in CONDITIONS:
        h = m[f"acc_{c}_heldout"]
        lines.append(f"| {c} | {m[f'acc_{c}']:.3f} | {'n/a' if h is None else f'{h:.3f}'} | "
                     f"{m[f'top5_{c}']:.3f} | {m[f'logprob_{c}']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _ann_table(ann: dict[str, Any], m: dict[str, Any]) -> str:
    lines = [f"## FAISS IVF (nlist {ann['nlist']}) vs exact search, BERT embeddings", "",
             f"| nprobe | overlap@{ann['k']} with exact | ms / query |",
             "|---|---|---|"]  # fmt: skip
    lines += [f"| {r['nprobe']} | {r['overlap']:.3f} | {r['ms_per_query']:.3f} |"
              for r in ann["rows"]]  # fmt: skip
    lines.append(f"\nFAISS flat top-{ann['k']} == numpy exact: {m['faiss_flat_equals_exact']:.3f} "
                 f"of queries; numpy exact: {m['exact_ms_per_query']:.3f} ms / query.")  # fmt: skip
    return "\n".join(lines) + "\n"


def _write_examples(
    ctx: RunContext,
    variant: str,
    questions: list[Question],
    corpus: list[str],
    ranked: dict[str, np.ndarray],
    preds: dict[str, list[str]],
) -> None:
    out = []
    for i, q in enumerate(questions[: ctx.config["n_examples"]]):
        out.append(f"Q: {q.prefix} ___{q.suffix}\n   answer: {q.answer!r}  (gold passage {q.gold})")
        for c in CONDITIONS:
            where = f"passage {int(ranked[c][i, 0])}" if c in RETRIEVERS else c
            out.append(f"   {c:>6} ({where}): {preds[c][i]!r}")
        out.append(f"   gold passage: {corpus[q.gold][:300]}\n")
    ctx.write_text(f"examples_{variant}.txt", "\n".join(out))
