"""``bpe_tokenizer``: a byte-level BPE trained on the TinyStories sample, measured.

Trains :class:`~layer4_architectures.sequence.bpe.BPETokenizer` on the first 90% of the sample
(:func:`~layer4_architectures.sequence.bpe.train_val_split`, the split ``gpt_tinystories`` uses),
saves it in the run folder (``vocab.json`` + ``merges.txt`` in GPT-2's formats, plus
``tokenizer_meta.json``), and reports its compression on the held-out 10% (bytes per token, the
headline), a vocabulary-size sweep (one training to the largest size, cut to each smaller one:
BPE is greedy, so the first k merges are the k-merge tokenizer), example tokenisations, and the
speed figures beside HF ``tokenizers`` trained on the same text with the same settings (a dev
dependency: without it the HF figures are left out and ``hf_available`` is 0). GPT-2's own
tokenizer (50257 ids, trained on WebText) is measured on the same held-out text for reference when
its files are under ``DLSTACK_DATA``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from layer0_math.datasets import data_dirs, load_tinystories
from layer0_math.lab import RunContext, deliverable, pyplot
from layer4_architectures.sequence.bpe import EOT, BPETokenizer, train_val_split
from layer4_architectures.sequence.pretokenize import bytes_to_printable

EXAMPLES = (
    "Once upon a time, there was a little girl named Lily.",
    'The dragon\'s enormous treasure glittered; Tim whispered: "Wow!"',
    f"The end.{EOT}Tom and Sue played in the park.",
    "Zyxomorphic quantum chromodynamics (unseen words) 😀 12345",
)


@deliverable(
    quick={
        "vocab_size": 4096,
        "sweep": [256, 512, 1024, 2048, 4096, 8192],
        "val_fraction": 0.1,
        "max_chars": 0,
        "compare_hf": True,
    },
    full={"vocab_size": 10000, "sweep": [256, 512, 1024, 2048, 4096, 8192, 10000]},
    headline=["bytes_per_token", "train_seconds", "encode_mb_per_s"],
)
def bpe_tokenizer(ctx: RunContext) -> dict[str, Any]:
    """Train, save, measure compression, sweep vocab sizes, time against HF."""
    cfg = ctx.config
    text = load_tinystories()
    if cfg["max_chars"]:
        text = text[: cfg["max_chars"]]
    train, held_out = train_val_split(text, cfg["val_fraction"])
    t0 = time.perf_counter()
    tok = BPETokenizer.train(train, cfg["vocab_size"])
    train_seconds = time.perf_counter() - t0
    tok.save(ctx.out_dir)
    metrics: dict[str, Any] = {
        "bytes_per_token": bytes_per_token(tok, held_out),
        "train_bytes_per_token": bytes_per_token(tok, train),
        "vocab_size": tok.vocab_size,
        "vocab_size_requested": cfg["vocab_size"],
        "train_seconds": train_seconds,
        "train_mb": len(train.encode("utf-8")) / 1e6,
        "held_out_mb": len(held_out.encode("utf-8")) / 1e6,
        **encode_speed(tok, text),
    }
    sweep = vocab_sweep(ctx, train, held_out, cfg["sweep"])
    gpt2 = gpt2_reference(held_out)
    metrics.update(gpt2)
    if cfg["compare_hf"]:
        metrics.update(hf_comparison(tok, train, text, cfg["vocab_size"]))
    plot_sweep(ctx, sweep, metrics)
    ctx.write_json("sweep.json", sweep)
    ctx.write_text("examples.md", examples_markdown(tok))
    return metrics


def bytes_per_token(tok: BPETokenizer, text: str) -> float:
    """UTF-8 bytes of ``text`` per token: the compression, independent of the vocabulary size."""
    return len(text.encode("utf-8")) / max(len(tok.encode(text)), 1)


def encode_speed(tok: BPETokenizer, text: str) -> dict[str, float]:
    """MB/s encoding ``text`` with an empty pre-token cache (a fresh copy) and a warm one."""
    mb = len(text.encode("utf-8")) / 1e6
    fresh = BPETokenizer.from_dict(tok.to_dict())
    t0 = time.perf_counter()
    fresh.encode(text)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    fresh.encode(text)
    warm = time.perf_counter() - t0
    return {"encode_mb_per_s": mb / cold, "encode_warm_mb_per_s": mb / warm, "encode_mb": mb}


def vocab_sweep(
    ctx: RunContext, train: str, held_out: str, sizes: list[int]
) -> list[dict[str, float]]:
    """Bytes/token on held-out text for each vocabulary size (one training, cut to each size)."""
    largest = BPETokenizer.train(train, max(sizes), progress=False)
    n_specials = len(largest.special_tokens)
    rows = []
    for size in ctx.progress(sorted(sizes), desc="vocab sweep"):
        n_merges = min(size - 256 - n_specials, len(largest.merges))
        tok = largest.truncated(max(n_merges, 0))
        rows.append(
            {
                "vocab_size_requested": size,
                "vocab_size": tok.vocab_size,
                "bytes_per_token": bytes_per_token(tok, held_out),
                "train_bytes_per_token": bytes_per_token(tok, train),
            }
        )
    return rows


def _gpt2_folder() -> Path | None:
    for folder in data_dirs():
        if (folder / "gpt2" / "vocab.json").exists() and (folder / "gpt2" / "merges.txt").exists():
            return folder / "gpt2"
    return None


def gpt2_reference(held_out: str) -> dict[str, float]:
    """GPT-2's bytes/token on the same held-out text (its files under DLSTACK_DATA), or {}."""
    folder = _gpt2_folder()
    if folder is None:
        return {}
    gpt2 = BPETokenizer.from_gpt2_files(folder / "vocab.json", folder / "merges.txt")
    return {"gpt2_bytes_per_token": bytes_per_token(gpt2, held_out)}


def hf_bpe(vocab_size: int) -> tuple[Any, Any]:
    """HF ``tokenizers``' byte-level BPE set up as ours is (GPT-2 regex, the 256-byte alphabet,
    ``<|endoftext|>``): the untrained tokenizer and its trainer. ImportError when not installed."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    return hf, trainer


def hf_comparison(tok: BPETokenizer, train: str, text: str, vocab_size: int) -> dict[str, Any]:
    """HF ``tokenizers`` on the same text: train seconds, encode MB/s, whether merges agree."""
    try:
        hf, trainer = hf_bpe(vocab_size)
    except ImportError:  # a dev dependency: the HF figures are optional
        return {"hf_available": 0}
    t0 = time.perf_counter()
    hf.train_from_iterator([train], trainer)
    hf_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf_tokens = hf.encode(text).tokens
    hf_encode = time.perf_counter() - t0
    ours_tokens = [bytes_to_printable(tok.token_bytes(i)) for i in tok.encode_ordinary(text)]
    mb = len(text.encode("utf-8")) / 1e6
    return {
        "hf_available": 1,
        "hf_train_seconds": hf_train,
        "hf_encode_mb_per_s": mb / hf_encode,
        "hf_vocab_size": hf.get_vocab_size(),
        "hf_same_tokens": int(ours_tokens == hf_tokens),
    }


def plot_sweep(ctx: RunContext, sweep: list[dict[str, float]], metrics: dict[str, Any]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = [r["vocab_size"] for r in sweep]
    ax.plot(sizes, [r["bytes_per_token"] for r in sweep], "o-", label="ours, held-out 10%")
    ax.plot(sizes, [r["train_bytes_per_token"] for r in sweep], "s--", alpha=0.6,
            label="ours, training 90%")  # fmt: skip
    ax.plot([metrics["vocab_size"]], [metrics["bytes_per_token"]], "r*", markersize=14,
            label=f"saved tokenizer ({metrics['vocab_size']} ids)")  # fmt: skip
    if "gpt2_bytes_per_token" in metrics:
        ax.axhline(metrics["gpt2_bytes_per_token"], color="gray", linestyle=":",
                   label="GPT-2 (50257 ids, WebText), held-out")  # fmt: skip
    for r in sweep:
        if r["vocab_size"] < r["vocab_size_requested"]:
            ax.annotate(f"asked {r['vocab_size_requested']}: no pair left at {r['vocab_size']}",
                        (r["vocab_size"], r["bytes_per_token"]), textcoords="offset points",
                        xytext=(-200, -25), arrowprops={"arrowstyle": "->"})  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("vocabulary size (256 bytes + merges + specials), log scale")
    ax.set_ylabel("UTF-8 bytes per token (higher = shorter sequences)")
    ax.set_title("Byte-level BPE on the TinyStories sample: compression vs vocabulary size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ctx.savefig(fig, "vocab_sweep.png")


def examples_markdown(tok: BPETokenizer) -> str:
    """Each example text as its tokens (``|`` between them) and ids."""
    lines = [f"# Example tokenisations (vocab {tok.vocab_size})", ""]
    for text in EXAMPLES:
        ids = tok.encode(text)
        pieces = [tok.decode_bytes([i]).decode("utf-8", errors="replace") for i in ids]
        lines += [
            f"text: `{text}`",
            "",
            f"{len(text.encode('utf-8'))} bytes -> {len(ids)} tokens: `{'|'.join(pieces)}`",
            "",
            f"ids: {ids}",
            "",
        ]
    return "\n".join(lines)
