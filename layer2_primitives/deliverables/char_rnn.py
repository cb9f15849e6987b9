"""char_rnn: character language models on tiny shakespeare with truncated BPTT.

An LSTM, then a GRU and an Elman RNN on a smaller budget, each trained by
:func:`layer2_primitives.char_lm.train_char_lm` (the one loop, clipped, one-cycle rate);
validation loss in nats/char on the held-out last 10 % of the text, a generated sample from
each, the LSTM's weights with its vocabulary in ``model.safetensors``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from layer0_math.datasets import CharVocab, load_tiny_shakespeare
from layer0_math.lab import RunContext, deliverable, pyplot
from layer2_primitives.char_lm import char_val_loss, sample_text, train_char_lm
from layer2_primitives.models import CharLM
from layer2_primitives.state import state_arrays


@dataclass
class CharConfig:
    lstm_steps: int = 900
    other_steps: int = 350
    batch_size: int = 32
    seq_len: int = 64
    embed_dim: int = 32
    hidden_size: int = 256
    lr: float = 1.0
    rnn_lr: float = 0.2  # the Elman RNN diverges at the LSTM/GRU rate
    momentum: float = 0.9
    clip: float = 5.0
    eval_every: int = 100
    eval_chars: int = 20000
    sample_chars: int = 500
    temperature: float = 0.8
    val_chars: int = 0  # 0: the whole validation split
    blas_threads: int = 1


@deliverable(
    quick=asdict(CharConfig()),
    full={
        "lstm_steps": 3000,
        "other_steps": 1000,
        "hidden_size": 512,
        "embed_dim": 64,
        "seq_len": 128,
        "batch_size": 64,
        "eval_every": 1000,
        "eval_chars": 50000,
    },
    headline=["val_loss", "val_loss_gru", "val_loss_rnn"],
)
def char_rnn(ctx: RunContext) -> dict[str, float]:
    cfg = CharConfig(**ctx.config)
    cpu0 = time.process_time()
    text = load_tiny_shakespeare()
    vocab = CharVocab.from_text(text)
    ids = vocab.encode(text)
    split = int(0.9 * len(ids))
    train_ids, val_ids = ids[:split], ids[split:]
    metrics: dict[str, float] = {}
    histories, samples = {}, []
    for cell, steps in (
        ("lstm", cfg.lstm_steps),
        ("gru", cfg.other_steps),
        ("rnn", cfg.other_steps),
    ):
        t0 = time.perf_counter()
        model = CharLM(len(vocab), cfg.embed_dim, cfg.hidden_size, cell, rng=ctx.rng)
        history = train_char_lm(
            model,
            train_ids,
            val_ids[: cfg.eval_chars],
            steps=steps,
            batch_size=cfg.batch_size,
            seq_len=cfg.seq_len,
            lr=cfg.rnn_lr if cell == "rnn" else cfg.lr,
            momentum=cfg.momentum,
            clip=cfg.clip,
            eval_every=cfg.eval_every,
            progress=ctx.progress,
            name=f"char_rnn {cell}",
        )
        histories[cell] = history.columns()
        val = char_val_loss(model, val_ids[: cfg.val_chars or None], cfg.batch_size, 128)
        suffix = "" if cell == "lstm" else f"_{cell}"
        metrics[f"val_loss{suffix}"] = val
        metrics[f"train_seconds{suffix}"] = time.perf_counter() - t0
        text_out = sample_text(model, vocab, "ROMEO:\n", cfg.sample_chars, cfg.temperature, ctx.rng)
        samples.append(
            f"=== {cell.upper()} ({steps} steps, val {val:.3f} nats/char) ===\n{text_out}\n"
        )
        if cell == "lstm":
            _save_lstm(ctx, cfg, model, vocab, val)
    ctx.write_text("samples.txt", "\n".join(samples))
    ctx.write_json("history.json", histories)
    _plot_curves(ctx, histories)
    metrics["lstm_steps"] = cfg.lstm_steps
    metrics["chars_per_step"] = cfg.batch_size * cfg.seq_len
    metrics["cpu_seconds"] = time.process_time() - cpu0
    return metrics


def _save_lstm(
    ctx: RunContext, cfg: CharConfig, model: CharLM, vocab: CharVocab, val: float
) -> None:
    meta = {
        "architecture": "CharLM",
        "cell": "lstm",
        "vocab_size": len(vocab),
        "embed_dim": cfg.embed_dim,
        "hidden_size": cfg.hidden_size,
        "chars": "".join(vocab.chars),
        "val_loss": val,
    }
    ctx.save_arrays("model.safetensors", state_arrays(model), meta=meta)


def _plot_curves(ctx: RunContext, histories: dict[str, dict[str, list[float]]]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, h in histories.items():
        (line,) = ax.plot(h["step"], h["val_loss"], "o-", label=f"{cell} val")
        ax.plot(h["step"], h["train_loss"], "--", color=line.get_color(), label=f"{cell} train")
    ax.set(xlabel="step", ylabel="nats / char", title="char-level LM on tiny shakespeare")
    ax.legend()
    ctx.savefig(fig, "loss_curves.png")
