"""Layer 2's deliverables, in run order: `python -m layer2_primitives [names...]`.

- cnn_cifar10: CifarCNN trained on CIFAR-10 with crop/flip augmentation, evaluated on the full
  10,000-image test set; saves model.safetensors (parameters + batch-norm buffers, torch names).
- char_rnn: character language models on tiny shakespeare with truncated BPTT (LSTM, then GRU
  and an Elman RNN on a smaller budget), validation loss in nats/char, generated samples.
- visualize: the CNN's first-layer filters and feature maps (from the cnn_cifar10 artifact) and
  the attention pattern of a small attention model trained to reverse sequences.

Every config has `blas_threads` (default 1; applied by layer0_math.lab while the deliverable
runs): our matmuls are many and mid-sized, and under load a second BLAS thread mostly waits at
barriers for a core (a (32, 256) @ (256, 1024) product ran 17x slower with 2 threads than 1).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from layer0_math.datasets import CharVocab, load_cifar10, load_tiny_shakespeare
from layer0_math.lab import RunContext, deliverable, load_arrays
from layer1_autograd import SGD, F, Tensor, no_grad
from layer2_primitives.models import CharLM, CifarCNN, ReversalAttention
from layer2_primitives.state import load_state_arrays, state_arrays
from layer2_primitives.training import (
    clip_grad_norm,
    confusion_matrix,
    one_cycle_lr,
    predict_batched,
    random_crop_flip,
)

CIFAR_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------- CIFAR-10 CNN


@dataclass
class CnnConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])
    epochs: int = 2
    batch_size: int = 128
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    train_subset: int = 50000
    eval_batch: int = 1000
    eval_every: int = 100
    eval_subset: int = 2000
    blas_threads: int = 1


def _cifar_normalised() -> tuple[np.ndarray, ...]:
    """Train/test images as float32, normalised per channel with the TRAIN mean and std."""
    x_train, y_train = load_cifar10("train")
    x_test, y_test = load_cifar10("test")
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)  # (3,)
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    norm = lambda x: (x.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    return norm(x_train), y_train, norm(x_test), y_test, mean, std


@deliverable(
    quick=asdict(CnnConfig(epochs=1)),
    full=asdict(CnnConfig(widths=[64, 128, 256], epochs=30, lr=0.05, eval_every=1000)),
    headline=["test_accuracy"],
)
def cnn_cifar10(ctx: RunContext) -> dict[str, float]:
    cfg = CnnConfig(**ctx.config)
    return _cnn_cifar10(ctx, cfg)


def _cnn_cifar10(ctx: RunContext, cfg: CnnConfig) -> dict[str, float]:
    cpu0 = time.process_time()
    x_train, y_train, x_test, y_test, mean, std = _cifar_normalised()
    order = ctx.rng.permutation(len(x_train))[: cfg.train_subset]  # train split is unsorted
    x_train, y_train = x_train[order], y_train[order]
    model = CifarCNN(cfg.widths, rng=ctx.rng)
    opt = SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(x_train) // cfg.batch_size
    total = cfg.epochs * steps_per_epoch
    # the test set is sorted by class: a random fixed subset tracks accuracy during training
    probe = ctx.rng.permutation(len(x_test))[: cfg.eval_subset]
    history: dict[str, list[float]] = {
        "step_loss": [], "eval_step": [], "train_acc": [], "test_acc_subset": []
    }  # fmt: skip
    step, correct, seen = 0, 0, 0
    bar = ctx.progress(total=total, desc="cnn_cifar10")
    for _ in range(cfg.epochs):
        perm = ctx.rng.permutation(len(x_train))
        for b in range(steps_per_epoch):
            model.train()
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = random_crop_flip(x_train[idx], ctx.rng)
            logits = model(Tensor(xb))
            loss = F.cross_entropy(logits, y_train[idx])
            if not np.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite training loss at step {step}")
            opt.zero_grad()
            loss.backward()
            opt.lr = one_cycle_lr(step, total, cfg.lr)
            opt.step()
            correct += int((logits.data.argmax(axis=1) == y_train[idx]).sum())
            seen += len(idx)
            history["step_loss"].append(loss.item())
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % cfg.eval_every == 0 or step == total:
                model.eval()
                probe_pred = predict_batched(model, x_test[probe], cfg.eval_batch).argmax(axis=1)
                history["eval_step"].append(step)
                history["train_acc"].append(correct / seen)
                history["test_acc_subset"].append(float((probe_pred == y_test[probe]).mean()))
                correct, seen = 0, 0
    bar.close()
    model.eval()
    pred = predict_batched(model, x_test, cfg.eval_batch).argmax(axis=1)  # the FULL test set
    test_accuracy = float((pred == y_test).mean())

    confusion = confusion_matrix(y_test, pred, 10)
    _plot_cnn_curves(ctx, history)
    _plot_confusion(ctx, confusion)
    meta = {
        "architecture": "CifarCNN",
        "widths": list(cfg.widths),
        "in_channels": 3,
        "num_classes": 10,
        "image_size": 32,
        "normalize_mean": mean.tolist(),
        "normalize_std": std.tolist(),
        "classes": list(CIFAR_CLASSES),
        "test_accuracy": test_accuracy,
    }
    ctx.save_arrays("model.safetensors", state_arrays(model), meta=meta)
    ctx.write_json("history.json", history)
    return {
        "test_accuracy": test_accuracy,
        "train_accuracy_last_window": history["train_acc"][-1],
        "final_train_loss": float(np.mean(history["step_loss"][-50:])),
        "epochs": cfg.epochs,
        "train_images": len(x_train),
        "cpu_seconds": time.process_time() - cpu0,
    }


def _plot_cnn_curves(ctx: RunContext, history: dict[str, list[float]]) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    loss = np.asarray(history["step_loss"])
    window = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    ax1.plot(loss, alpha=0.3, label="per step")
    ax1.plot(np.arange(len(smooth)) + window - 1, smooth, label=f"mean of {window}")
    ax1.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    ax1.legend()
    steps = history["eval_step"]
    ax2.plot(steps, history["train_acc"], "o-", label="train (augmented, since last point)")
    ax2.plot(steps, history["test_acc_subset"], "o-", label="test (fixed random subset)")
    ax2.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    ax2.legend()
    ctx.savefig(fig, "curves.png")


def _plot_confusion(ctx: RunContext, confusion: np.ndarray) -> None:
    """Row-normalised confusion matrix of the full test set."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5))
    rates = confusion / confusion.sum(axis=1, keepdims=True)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(10), CIFAR_CLASSES, rotation=60)
    ax.set_yticks(range(10), CIFAR_CLASSES)
    ax.set(xlabel="predicted", ylabel="true", title="test confusion (row-normalised)")
    for i in range(10):
        for j in range(10):
            ax.text(j, i, f"{rates[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im)
    ctx.savefig(fig, "confusion_matrix.png")


# --------------------------------------------------------------------------- char-level LMs


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


def _streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """Cut a long id sequence into `batch` contiguous streams (B, L) read in parallel."""
    length = len(ids) // batch
    return ids[: batch * length].reshape(batch, length)


def _detach(state):
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def char_val_loss(model: CharLM, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean cross-entropy (nats/char) of predicting ids[t+1] from ids[..t], state carried."""
    streams = _streams(ids, batch)
    total, count, state = 0.0, 0, None
    with no_grad():
        for start in range(0, streams.shape[1] - 1, seq_len):
            x = streams[:, start : start + seq_len]
            y = streams[:, start + 1 : start + seq_len + 1]
            x = x[:, : y.shape[1]]
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), "sum")
            total += loss.item()
            count += y.size
    return total / count


def sample_text(
    model: CharLM, vocab: CharVocab, prime: str, length: int, temperature: float, rng
) -> str:
    """Feed `prime`, then sample `length` characters one at a time from softmax(logits / T)."""
    out = list(prime)
    with no_grad():
        logits, state = model(vocab.encode(prime)[None, :])
        for _ in range(length):
            z = logits.data[0, -1].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(vocab.chars[nxt])
            logits, state = model(np.array([[nxt]]), state)
    return "".join(out)


def train_char_lm(
    ctx: RunContext,
    cfg: CharConfig,
    cell: str,
    steps: int,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    vocab_size: int,
) -> tuple[CharLM, dict[str, list[float]]]:
    """Truncated BPTT: chunks of seq_len, state carried across chunks and detached."""
    model = CharLM(vocab_size, cfg.embed_dim, cfg.hidden_size, cell, rng=ctx.rng)
    peak_lr = cfg.rnn_lr if cell == "rnn" else cfg.lr
    opt = SGD(model.parameters(), lr=peak_lr, momentum=cfg.momentum)
    streams = _streams(train_ids, cfg.batch_size)
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": []}
    state, pos, recent = None, 0, []
    for step in ctx.progress(range(steps), desc=f"char_rnn {cell}"):
        if pos + cfg.seq_len + 1 > streams.shape[1]:  # epoch boundary: start the streams over
            pos, state = 0, None
        x = streams[:, pos : pos + cfg.seq_len]
        y = streams[:, pos + 1 : pos + cfg.seq_len + 1]
        pos += cfg.seq_len
        logits, state = model(x, state)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))
        if not np.isfinite(loss.item()):
            raise FloatingPointError(f"{cell}: non-finite loss at step {step}")
        opt.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), cfg.clip)
        opt.lr = one_cycle_lr(step, steps, peak_lr, warmup=0.05)
        opt.step()
        state = _detach(state)  # truncate backpropagation at the chunk boundary
        recent.append(loss.item())
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            val = char_val_loss(model, val_ids[: cfg.eval_chars], cfg.batch_size, 128)
            history["step"].append(step + 1)
            history["train_loss"].append(float(np.mean(recent)))
            history["val_loss"].append(val)
            recent = []
    return model, history


@deliverable(
    quick=asdict(CharConfig()),
    full=asdict(
        CharConfig(
            lstm_steps=3000,
            other_steps=1000,
            hidden_size=512,
            embed_dim=64,
            seq_len=128,
            batch_size=64,
            eval_every=1000,
            eval_chars=50000,
        )
    ),
    headline=["val_loss", "val_loss_gru", "val_loss_rnn"],
)
def char_rnn(ctx: RunContext) -> dict[str, float]:
    cfg = CharConfig(**ctx.config)
    return _char_rnn(ctx, cfg)


def _char_rnn(ctx: RunContext, cfg: CharConfig) -> dict[str, float]:
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
        model, histories[cell] = train_char_lm(
            ctx, cfg, cell, steps, train_ids, val_ids, len(vocab)
        )
        val = char_val_loss(model, val_ids[: cfg.val_chars or None], cfg.batch_size, 128)
        suffix = "" if cell == "lstm" else f"_{cell}"
        metrics[f"val_loss{suffix}"] = val
        metrics[f"train_seconds{suffix}"] = time.perf_counter() - t0
        text_out = sample_text(model, vocab, "ROMEO:\n", cfg.sample_chars, cfg.temperature, ctx.rng)
        samples.append(
            f"=== {cell.upper()} ({steps} steps, val {val:.3f} nats/char) ===\n{text_out}\n"
        )
        if cell == "lstm":
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
    ctx.write_text("samples.txt", "\n".join(samples))
    ctx.write_json("history.json", histories)
    _plot_char_curves(ctx, histories)
    metrics["lstm_steps"] = cfg.lstm_steps
    metrics["chars_per_step"] = cfg.batch_size * cfg.seq_len
    metrics["cpu_seconds"] = time.process_time() - cpu0
    return metrics


def _plot_char_curves(ctx: RunContext, histories: dict[str, dict[str, list[float]]]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell, h in histories.items():
        (line,) = ax.plot(h["step"], h["val_loss"], "o-", label=f"{cell} val")
        ax.plot(h["step"], h["train_loss"], "--", color=line.get_color(), label=f"{cell} train")
    ax.set(xlabel="step", ylabel="nats / char", title="char-level LM on tiny shakespeare")
    ax.legend()
    ctx.savefig(fig, "loss_curves.png")


# --------------------------------------------------------------------------- visualisation


@dataclass
class VisualizeConfig:
    num_images: int = 4
    num_maps: int = 8
    attn_steps: int = 600
    attn_seq_len: int = 8
    attn_vocab: int = 10
    attn_embed: int = 32
    attn_batch: int = 64
    attn_lr: float = 0.1
    blas_threads: int = 1


def attention_diagonal_mass(weights: np.ndarray) -> float:
    """Mean attention weight on the anti-diagonal (query i -> key T-1-i). weights (B, h, T, T)."""
    t = weights.shape[-1]
    return float(weights[..., np.arange(t), t - 1 - np.arange(t)].sum(axis=-1).mean() / t)


def train_reversal(ctx: RunContext, cfg: VisualizeConfig) -> tuple[ReversalAttention, dict]:
    """Train ReversalAttention to map a random sequence to its reverse."""
    model = ReversalAttention(cfg.attn_vocab, cfg.attn_seq_len, cfg.attn_embed, rng=ctx.rng)
    opt = SGD(model.parameters(), lr=cfg.attn_lr, momentum=0.9)
    losses = []
    for step in ctx.progress(range(cfg.attn_steps), desc="reversal attention"):
        ids = ctx.rng.integers(0, cfg.attn_vocab, size=(cfg.attn_batch, cfg.attn_seq_len))
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, cfg.attn_vocab), ids[:, ::-1].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.lr = one_cycle_lr(step, cfg.attn_steps, cfg.attn_lr, warmup=0.05)
        opt.step()
        losses.append(loss.item())
    ids = ctx.rng.integers(0, cfg.attn_vocab, size=(512, cfg.attn_seq_len))
    with no_grad():
        logits, weights = model(ids, need_weights=True)
    accuracy = float((logits.data.argmax(axis=-1) == ids[:, ::-1]).mean())
    return model, {"losses": losses, "weights": weights, "accuracy": accuracy, "ids": ids}


@deliverable(
    quick=asdict(VisualizeConfig()),
    full=asdict(VisualizeConfig(attn_steps=2000)),
    headline=["attention_diagonal_mass"],
)
def visualize(ctx: RunContext) -> dict[str, float]:
    cfg = VisualizeConfig(**ctx.config)
    return _visualize(ctx, cfg)


def _visualize(ctx: RunContext, cfg: VisualizeConfig) -> dict[str, float]:
    cpu0 = time.process_time()
    runs_dir = Path(ctx.out_dir).parents[2]  # runs/<layer>/<deliverable>/<stamp> -> runs/
    arrays, meta = load_arrays("layer2_primitives", "cnn_cifar10", "model.safetensors", runs_dir)
    model = CifarCNN(meta["widths"], rng=np.random.default_rng(0))
    load_state_arrays(model, arrays)
    model.eval()
    x_test, y_test = load_cifar10("test")
    pick = ctx.rng.choice(len(x_test), size=cfg.num_images, replace=False)
    mean = np.asarray(meta["normalize_mean"], np.float32)[:, None, None]
    std = np.asarray(meta["normalize_std"], np.float32)[:, None, None]
    images = (x_test[pick].astype(np.float32) - mean) / std
    with no_grad():
        maps = Tensor(images)
        for layer in model.features[:3]:  # conv -> batch norm -> relu of the first stage
            maps = layer(maps)
    _plot_filters(ctx, arrays["features.0.weight"])
    _plot_feature_maps(ctx, x_test[pick], y_test[pick], maps.data, cfg.num_maps, meta["classes"])

    _, result = train_reversal(ctx, cfg)
    mass = attention_diagonal_mass(result["weights"])
    _plot_attention(ctx, result["weights"], result["ids"])
    return {
        "attention_diagonal_mass": mass,
        "reversal_accuracy": result["accuracy"],
        "reversal_final_loss": float(np.mean(result["losses"][-50:])),
        "cpu_seconds": time.process_time() - cpu0,
    }


def _plot_filters(ctx: RunContext, weight: np.ndarray) -> None:
    plt = _plt()
    n = weight.shape[0]
    cols = 8
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.1))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k < n:
            f = weight[k].transpose(1, 2, 0)  # (3, 3, RGB)
            ax.imshow((f - f.min()) / (f.max() - f.min() + 1e-12), interpolation="nearest")
    fig.suptitle("first-layer filters (each rescaled to [0, 1], RGB)")
    ctx.savefig(fig, "filters.png")


def _plot_feature_maps(ctx, images, labels, maps, num_maps, classes) -> None:
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(n, num_maps + 1, figsize=((num_maps + 1) * 1.2, n * 1.3))
    for i in range(n):
        axes[i, 0].imshow(images[i].transpose(1, 2, 0))
        axes[i, 0].set_title(classes[labels[i]], fontsize=8)
        for j in range(num_maps):
            axes[i, j + 1].imshow(maps[i, j], cmap="viridis")
            if i == 0:
                axes[i, j + 1].set_title(f"ch {j}", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle("first stage (conv -> batch norm -> ReLU) feature maps")
    ctx.savefig(fig, "feature_maps.png")


def _plot_attention(ctx: RunContext, weights: np.ndarray, ids: np.ndarray) -> None:
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 4))
    t = weights.shape[-1]
    ax1.imshow(weights[0, 0], cmap="magma", vmin=0, vmax=1)
    ax1.set_xticks(range(t), ids[0])
    ax1.set_yticks(range(t), ids[0, ::-1])
    ax1.set(xlabel="key (input token)", ylabel="query (output = reversed)", title="one sequence")
    im = ax2.imshow(weights.mean(axis=(0, 1)), cmap="magma", vmin=0, vmax=1)
    ax2.set(xlabel="key position", ylabel="query position", title="mean over 512 sequences")
    fig.colorbar(im)
    ctx.savefig(fig, "attention.png")
