"""Character-level language modelling with recurrent nets: streams, truncated BPTT, evaluation
in nats per character, and sampling.

A text of ids c_0 … c_N is cut into B contiguous *streams* read in parallel, one row each
(B, N/B); a step reads the next chunk of T ids from every stream and predicts each following
id, so the loss is the mean of −log p(c_{t+1} | c_≤t) over B·T positions (nats per char; a
uniform guess over V characters gives ln V, character frequencies alone about 3.3 on English).

Truncated backpropagation through time: the recurrent state is carried from one chunk to the
next, so the model sees context across chunk boundaries, but it is *detached* there, so the
gradient flows back at most T steps and a step costs O(T), not O(N). At the end of the streams
the state starts over from zero (an epoch boundary).

Sampling: feed a prime, then draw each next character from softmax(z / τ), with the temperature
τ < 1 sharpening the distribution towards the likeliest characters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from layer0_math.datasets import CharVocab
from layer1_autograd import SGD, F, Tensor, no_grad
from layer1_autograd.training import History, fit, one_cycle
from layer2_primitives.models import CharLM

__all__ = ["streams", "detach_state", "char_val_loss", "sample_text", "train_char_lm"]

State = Tensor | tuple[Tensor, ...] | None


def streams(ids: np.ndarray, batch: int) -> np.ndarray:
    """Cut a long id sequence into ``batch`` contiguous streams (B, L) read in parallel."""
    length = len(ids) // batch
    if length < 2:
        raise ValueError(f"{len(ids)} ids are too few for {batch} streams of at least 2")
    return ids[: batch * length].reshape(batch, length)


def detach_state(state: State) -> State:
    """The recurrent state cut from its graph (h, or the LSTM's (h, c)): where BPTT stops."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach() if state is not None else None


def char_val_loss(model: CharLM, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean cross-entropy (nats/char) of predicting ids[t+1] from ids[..t], state carried."""
    rows = streams(ids, batch)
    total, count, state = 0.0, 0, None
    with no_grad():
        for start in range(0, rows.shape[1] - 1, seq_len):
            x = rows[:, start : start + seq_len]
            y = rows[:, start + 1 : start + seq_len + 1]
            x = x[:, : y.shape[1]]
            logits, state = model(x, state)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), "sum")
            total += loss.item()
            count += y.size
    return total / count


def sample_text(
    model: CharLM,
    vocab: CharVocab,
    prime: str,
    length: int,
    temperature: float,
    rng: np.random.Generator,
) -> str:
    """Feed ``prime``, then sample ``length`` characters one at a time from softmax(logits / T)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
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
    model: CharLM,
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    seq_len: int,
    lr: float,
    momentum: float,
    clip: float,
    eval_every: int,
    eval_seq_len: int = 128,
    progress: Callable[..., Any] | None = None,
    name: str = "char_lm",
) -> History:
    """Truncated BPTT with the one loop: SGD + momentum, one-cycle rate (5 % warmup) peaking
    at ``lr``, global-norm clipping at ``clip``; ``val_loss`` on ``val_ids`` every
    ``eval_every`` steps (and after the last) joins the history."""
    rows = streams(train_ids, batch_size)
    if rows.shape[1] < seq_len + 1:
        raise ValueError(f"streams of {rows.shape[1]} ids are too short for seq_len={seq_len}")
    vocab_size = model.head.weight.shape[0]
    carried: dict[str, Any] = {"state": None, "pos": 0}

    def loss_fn(step: int) -> Tensor:
        if carried["pos"] + seq_len + 1 > rows.shape[1]:  # epoch boundary: start over
            carried["pos"], carried["state"] = 0, None
        pos = carried["pos"]
        x, y = rows[:, pos : pos + seq_len], rows[:, pos + 1 : pos + seq_len + 1]
        carried["pos"] += seq_len
        logits, state = model(x, carried["state"])
        carried["state"] = detach_state(state)  # the next chunk starts from here, no gradient
        return F.cross_entropy(logits.reshape(-1, vocab_size), y.reshape(-1))

    def evaluate(done: int) -> dict[str, float]:
        return {"val_loss": char_val_loss(model, val_ids, batch_size, eval_seq_len)}

    return fit(
        loss_fn,
        SGD(model.parameters(), lr=lr, momentum=momentum),
        steps,
        schedule=one_cycle(lr, steps, warmup=0.05),
        clip_norm=clip,
        evaluate=evaluate,
        eval_every=eval_every,
        progress=progress,
        name=name,
    )
