"""RNN/LSTM/GRU cells and sequences against torch: outputs, final states and every gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from layer1_autograd import Tensor
from layer2_primitives import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from tests.layer2.torch_compare import assert_close, compare_grads, copy_params

SEQUENCES = {
    "lstm": (LSTM, torch.nn.LSTM, {}),
    "gru": (GRU, torch.nn.GRU, {}),
    "rnn_tanh": (RNN, torch.nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, torch.nn.RNN, {"nonlinearity": "relu"}),
}


def _weighted_sum(outputs, weights):
    """sum_k <outputs_k, weights_k>: a scalar loss touching every output (ours or torch)."""
    if isinstance(outputs[0], Tensor):
        total = None
        for o, w in zip(outputs, weights, strict=True):
            term = (o * Tensor(w)).sum()
            total = term if total is None else total + term
        return total
    return sum((o * torch.tensor(w)).sum() for o, w in zip(outputs, weights, strict=True))


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(sorted(SEQUENCES)),
    b=st.integers(1, 3),
    t=st.integers(1, 5),
    d=st.integers(1, 4),
    h=st.integers(1, 4),
    layers=st.integers(1, 2),
    bias=st.booleans(),
    given_state=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sequence_matches_torch(kind, b, t, d, h, layers, bias, given_state, seed):
    rng = np.random.default_rng(seed)
    cls, tcls, kw = SEQUENCES[kind]
    ours = cls(d, h, num_layers=layers, bias=bias, rng=rng, dtype=np.float64, **kw)
    theirs = tcls(d, h, num_layers=layers, bias=bias, batch_first=True, **kw).double()
    copy_params(ours, theirs)
    x = rng.normal(size=(b, t, d))
    h0, c0 = rng.normal(size=(layers, b, h)), rng.normal(size=(layers, b, h))
    X, H0, C0 = (Tensor(a, requires_grad=True) for a in (x, h0, c0))
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    if kind == "lstm":
        out, (hn, cn) = ours(X, (H0, C0) if given_state else None)
        tout, (thn, tcn) = theirs(tx, (th0, tc0) if given_state else None)
        mine, ref = [out, hn, cn], [tout, thn, tcn]
    else:
        out, hn = ours(X, H0 if given_state else None)
        tout, thn = theirs(tx, th0 if given_state else None)
        mine, ref = [out, hn], [tout, thn]
    weights = [rng.normal(size=o.shape) for o in mine]
    _weighted_sum(mine, weights).backward()
    _weighted_sum(ref, weights).backward()
    for name, o, r in zip(["output", "h_n", "c_n"], mine, ref, strict=False):
        assert_close(o, r, f"{kind} {name}")
    assert_close(X.grad, tx.grad, f"{kind} grad x")
    if given_state:
        assert_close(H0.grad, th0.grad, f"{kind} grad h0")
        if kind == "lstm":
            assert_close(C0.grad, tc0.grad, f"{kind} grad c0")
    compare_grads(ours, theirs)


@pytest.mark.parametrize(
    "cls, tcls",
    [(LSTMCell, torch.nn.LSTMCell), (GRUCell, torch.nn.GRUCell), (RNNCell, torch.nn.RNNCell)],
)
def test_cells_match_torch(cls, tcls, rng):
    ours, theirs = cls(3, 4, rng=rng, dtype=np.float64), tcls(3, 4).double()
    copy_params(ours, theirs)
    x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 4)), rng.normal(size=(2, 4))
    X, H, C = (Tensor(a, requires_grad=True) for a in (x, h, c))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    if cls is LSTMCell:
        mine, ref = list(ours(X, (H, C))), list(theirs(tx, (th, tc)))
    else:
        mine, ref = [ours(X, H)], [theirs(tx, th)]
    weights = [rng.normal(size=o.shape) for o in mine]
    _weighted_sum(mine, weights).backward()
    _weighted_sum(ref, weights).backward()
    for o, r in zip(mine, ref, strict=True):
        assert_close(o, r, f"{cls.__name__} output")
    assert_close(X.grad, tx.grad, "grad x")
    assert_close(H.grad, th.grad, "grad h")
    compare_grads(ours, theirs)


def test_truncated_bptt_chunks_continue_the_sequence(rng):
    """Two chunks with the carried (detached) state give the same outputs as one long run."""
    lstm = LSTM(3, 5, rng=rng, dtype=np.float64)
    x = rng.normal(size=(2, 8, 3))
    full, _ = lstm(Tensor(x))
    first, (h, c) = lstm(Tensor(x[:, :5]))
    second, _ = lstm(Tensor(x[:, 5:]), (h.detach(), c.detach()))
    np.testing.assert_allclose(
        np.concatenate([first.data, second.data], axis=1), full.data, atol=1e-12
    )


def test_recurrent_bad_shapes(rng):
    lstm = LSTM(3, 5, rng=rng, dtype=np.float64)
    with pytest.raises(ValueError, match=r"input \(2, 4, 7\) has feature size 7, expected 3"):
        lstm(Tensor(np.zeros((2, 4, 7))))
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 2, 5\), got \(2, 5\)"):
        lstm(Tensor(np.zeros((2, 4, 3))), (Tensor(np.zeros((2, 5))), Tensor(np.zeros((2, 5)))))
    with pytest.raises(ValueError, match="must have 3 dims"):
        GRU(3, 5, rng=rng)(Tensor(np.zeros((4, 3), np.float32)))
    with pytest.raises(ValueError, match="unknown recurrent mode 'rnn_sigmoid'"):
        RNN(3, 5, nonlinearity="sigmoid", rng=rng)
