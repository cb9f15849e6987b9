"""Char-LM helpers: chunked evaluation with the state carried equals one pass over the stream;
sampling at a tiny temperature is greedy decoding; truncated BPTT lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest

from layer0_math.datasets import CharVocab
from layer1_autograd import F, no_grad
from layer2_primitives import CharLM
from layer2_primitives.char_lm import (
    char_val_loss,
    detach_state,
    sample_text,
    streams,
    train_char_lm,
)


def _model(cell: str = "lstm", vocab: int = 7) -> CharLM:
    return CharLM(vocab, 5, 8, cell, rng=np.random.default_rng(0), dtype=np.float64)


def test_streams_are_contiguous_rows():
    ids = np.arange(23)
    rows = streams(ids, 4)
    assert rows.shape == (4, 5)
    np.testing.assert_array_equal(rows.ravel(), ids[:20])
    with pytest.raises(ValueError, match="too few"):
        streams(ids[:5], 4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chunked_validation_loss_equals_one_pass_over_each_stream(cell, rng):
    """Carrying the state across chunks of 4 must give the loss of one unchunked pass."""
    model, ids = _model(cell), rng.integers(0, 7, 2 * 30)
    chunked = char_val_loss(model, ids, batch=2, seq_len=4)
    rows = streams(ids, 2)
    with no_grad():
        logits, _ = model(rows[:, :-1])
        whole = F.cross_entropy(logits.reshape(-1, 7), rows[:, 1:].reshape(-1)).item()
    assert chunked == pytest.approx(whole, rel=1e-12)


def test_detach_state_cuts_the_graph_and_keeps_the_values():
    model = _model("lstm")
    _, (h, c) = model(np.zeros((1, 3), dtype=np.int64))
    h2, c2 = detach_state((h, c))
    assert h2.requires_grad is False and c2.requires_grad is False
    np.testing.assert_array_equal(h2.data, h.data)
    assert detach_state(None) is None


def test_sampling_at_a_tiny_temperature_is_greedy_decoding():
    vocab = CharVocab(tuple("abcdefg"))
    model = _model()
    text = sample_text(model, vocab, "ab", 6, 1e-6, np.random.default_rng(0))
    with no_grad():  # greedy: argmax at every step
        out, ids = "ab", vocab.encode("ab")
        for _ in range(6):
            logits, _ = model(ids[None, :])
            nxt = int(logits.data[0, -1].argmax())
            out += vocab.chars[nxt]
            ids = np.append(ids, nxt)
    assert text == out
    with pytest.raises(ValueError, match="temperature"):
        sample_text(model, vocab, "a", 1, 0.0, np.random.default_rng(0))


def test_truncated_bptt_learns_a_repeating_text():
    """A period-7 cycle is predictable from one character: the loss must fall far below ln 7."""
    ids = np.tile(np.arange(7), 200)
    model = _model("gru")
    hist = train_char_lm(
        model, ids, ids[:280], steps=60, batch_size=4, seq_len=8, lr=0.5, momentum=0.9,
        clip=5.0, eval_every=30, eval_seq_len=16,
    )  # fmt: skip
    assert hist.column("step") == [30, 60]
    assert hist.evals[-1]["val_loss"] < 0.2 * np.log(7), hist.evals
    with pytest.raises(ValueError, match="too short"):
        train_char_lm(model, ids[:40], ids, steps=1, batch_size=4, seq_len=16, lr=0.1,
                      momentum=0.0, clip=1.0, eval_every=0)  # fmt: skip
