"""Recurrent layers: Elman RNN, LSTM and GRU cells and their unrolled sequence versions (BPTT).

Notation (torch's): x_t (B, D) input, h_{t-1} (B, H) state; each cell has weight_ih (G*H, D),
weight_hh (G*H, H), bias_ih (G*H,), bias_hh (G*H,) with G gate blocks stacked in torch's order.

RNN  (G = 1):  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)          (or relu)

LSTM (G = 4, blocks i, f, g, o):
    [i, f, g, o] = [sigma, sigma, tanh, sigma](W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)

GRU  (G = 3, blocks r, z, n):
    r = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

Speed: the whole sequence is ONE fused op. The input projections of all T steps are one matmul
(T*B, D) @ (D, G*H) before the loop; each step then only does h @ W_hh^T and elementwise gate
math. Backpropagation through time runs the same loop in reverse, producing per-step gradients
with respect to the two pre-activations, dXG_t = dL/d(W_ih x_t + b_ih) and
dHG_t = dL/d(W_hh h_{t-1} + b_hh) (equal for RNN and LSTM, different for GRU because r gates
the hidden projection), and the recurrent gradient dh_{t-1} += dHG_t @ W_hh. Only after the loop
are the weight gradients formed, each as one big matmul over all steps:

    dW_ih = sum_t dXG_t^T x_t,   dW_hh = sum_t dHG_t^T h_{t-1},   db_ih = sum dXG,  db_hh = sum dHG,
    dx_t  = dXG_t @ W_ih.

Per-step LSTM derivatives (with dh the total gradient reaching h_t, dc the one reaching c_t):
    dc += dh * o * (1 - tanh(c_t)^2);  do = dh * tanh(c_t);  di = dc * g;  dg = dc * i;
    df = dc * c_{t-1};  dc_{t-1} = dc * f;  then through sigma' = s(1-s) and tanh' = 1 - t^2.
GRU:  dn = dh (1 - z);  dz = dh (h_{t-1} - n);  dh_{t-1} = dh z + ...;  dn_pre = dn (1 - n^2);
      dr = dn_pre * (W_hn h + b_hn);  the hidden n-block gradient is dn_pre * r.

Sequence modules take batch_first input (B, T, D) and return (output (B, T, H), h_n (L, B, H))
— LSTM: (output, (h_n, c_n)) — like torch with batch_first=True. For truncated BPTT pass the
previous chunk's state back in after `.detach()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from layer1_autograd import Module, Tensor, stack
from layer2_primitives._util import check_dtypes, check_tensor, uniform

Saved = tuple[np.ndarray, ...]


def _rnn_step(nonlinearity: str):
    def step(xg, hg, h, c):  # xg, hg (B, H)
        pre = xg + hg
        h_new = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
        return h_new, None, (h_new,)

    def step_back(dh, dc, saved, h_prev, c_prev):
        (h_new,) = saved
        dpre = dh * (1 - h_new * h_new) if nonlinearity == "tanh" else dh * (h_new > 0)
        return dpre, dpre, 0.0, None

    return step, step_back


def _lstm_step(xg, hg, h, c):
    hid = h.shape[1]
    acts = expit(xg + hg)  # (B, 4H): sigma on every block, then tanh on the g block
    acts[:, 2 * hid : 3 * hid] = np.tanh(xg[:, 2 * hid : 3 * hid] + hg[:, 2 * hid : 3 * hid])
    i, f, g, o = (acts[:, k * hid : (k + 1) * hid] for k in range(4))
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    return o * tanh_c, c_new, (acts, tanh_c)


def _lstm_step_back(dh, dc, saved, h_prev, c_prev):
    acts, tanh_c = saved
    hid = tanh_c.shape[1]
    i, f, g, o = (acts[:, k * hid : (k + 1) * hid] for k in range(4))
    dc = dc + dh * o * (1 - tanh_c * tanh_c)
    dpre = np.empty_like(acts)  # (B, 4H)
    dpre[:, :hid] = dc * g * i * (1 - i)
    dpre[:, hid : 2 * hid] = dc * c_prev * f * (1 - f)
    dpre[:, 2 * hid : 3 * hid] = dc * i * (1 - g * g)
    dpre[:, 3 * hid :] = dh * tanh_c * o * (1 - o)
    return dpre, dpre, 0.0, dc * f


def _gru_step(xg, hg, h, c):
    hid = h.shape[1]
    rz = expit(xg[:, : 2 * hid] + hg[:, : 2 * hid])
    r, z = rz[:, :hid], rz[:, hid:]
    hn = hg[:, 2 * hid :]  # W_hn h + b_hn
    n = np.tanh(xg[:, 2 * hid :] + r * hn)
    return n + z * (h - n), None, (r, z, n, hn)


def _gru_step_back(dh, dc, saved, h_prev, c_prev):
    r, z, n, hn = saved
    hid = n.shape[1]
    dn_pre = dh * (1 - z) * (1 - n * n)
    dxg = np.empty((dh.shape[0], 3 * hid), dtype=dh.dtype)
    dxg[:, :hid] = dn_pre * hn * r * (1 - r)
    dxg[:, hid : 2 * hid] = dh * (h_prev - n) * z * (1 - z)
    dxg[:, 2 * hid :] = dn_pre
    dhg = dxg.copy()
    dhg[:, 2 * hid :] = dn_pre * r
    return dxg, dhg, dh * z, None


@dataclass(frozen=True)
class _CellKind:
    gates: int
    has_cell_state: bool
    step: Callable
    step_back: Callable


def _cell_kind(mode: str) -> _CellKind:
    if mode == "lstm":
        return _CellKind(4, True, _lstm_step, _lstm_step_back)
    if mode == "gru":
        return _CellKind(3, False, _gru_step, _gru_step_back)
    if mode in ("rnn_tanh", "rnn_relu"):
        step, step_back = _rnn_step(mode[4:])
        return _CellKind(1, False, step, step_back)
    raise ValueError(f"unknown recurrent mode {mode!r}; expected lstm, gru, rnn_tanh or rnn_relu")


def _check_shapes(
    mode: str,
    kind: _CellKind,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
) -> None:
    """Input (B, T >= 1, D), weights (G*H, D) and (G*H, H), states (B, H), or a clear error."""
    check_tensor(x, "recurrent input", 3)
    b, t, d = x.shape
    gh, hid = weight_hh.shape
    if gh != kind.gates * hid or weight_ih.shape != (gh, d):
        raise ValueError(
            f"{mode}: input {x.shape} with weight_ih {weight_ih.shape} and weight_hh "
            f"{weight_hh.shape}; expected weight_ih ({kind.gates}*H, {d}), weight_hh ({gh}, H)"
        )
    states = [h0] + ([c0] if kind.has_cell_state else [])
    for name, s in zip(("h0", "c0"), states, strict=False):
        if s is None or s.shape != (b, hid):
            raise ValueError(
                f"{mode}: {name} must have shape ({b}, {hid}), got {getattr(s, 'shape', None)}"
            )
    if t < 1:
        raise ValueError(f"{mode}: sequence length must be >= 1, got input {x.shape}")


def _run_steps(
    kind: _CellKind,
    xg: np.ndarray,
    h0: Tensor,
    c0: Tensor | None,
    w_hh: np.ndarray,
    b_hh: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, list[Saved]]:
    """The forward recurrence over xg (T, B, G*H): hidden states h_0..h_T (and c_0..c_T)."""
    t, b, _ = xg.shape
    hid = w_hh.shape[1]
    hs = np.empty((t + 1, b, hid), xg.dtype)  # h_0 .. h_T
    hs[0] = h0.data
    cs = np.empty((t + 1, b, hid), xg.dtype) if kind.has_cell_state else None
    if cs is not None:
        cs[0] = c0.data
    saved: list[Saved] = []
    for step in range(t):
        hg = hs[step] @ w_hh.T + b_hh  # (B, G*H)
        c_prev = cs[step] if cs is not None else None
        h_new, c_new, keep = kind.step(xg[step], hg, hs[step], c_prev)
        hs[step + 1] = h_new
        if cs is not None:
            cs[step + 1] = c_new
        saved.append(keep)
    return hs, cs, saved


def recurrent_layer(
    mode: str,
    x: Tensor,
    h0: Tensor,
    c0: Tensor | None,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Run one recurrent layer over a whole sequence as one fused op.

    x (B, T, D), h0 (B, H), c0 (B, H) for LSTM else None -> (output (B, T, H), h_T, c_T or None).
    """
    kind = _cell_kind(mode)
    _check_shapes(mode, kind, x, h0, c0, weight_ih, weight_hh)
    b, t, d = x.shape
    gh, hid = weight_hh.shape
    dtype = check_dtypes(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh)

    w_ih, w_hh = weight_ih.data, weight_hh.data
    x_tm = np.ascontiguousarray(x.data.transpose(1, 0, 2))  # (T, B, D) time-major
    # (T, B, G*H): every step's input projection in ONE 2-D matmul (a 3-D operand would make
    # numpy run T small matmuls instead)
    xg = (x_tm.reshape(t * b, d) @ w_ih.T).reshape(t, b, gh)
    if bias_ih is not None:
        xg += bias_ih.data
    b_hh = bias_hh.data if bias_hh is not None else np.zeros(gh, dtype)
    hs, cs, saved = _run_steps(kind, xg, h0, c0, w_hh, b_hh)

    # one packed output (B, T + 1, H): h_1 .. h_T, then c_T (LSTM; zeros and unused otherwise)
    packed = np.empty((b, t + 1, hid), dtype)
    packed[:, :t] = hs[1:].transpose(1, 0, 2)
    packed[:, t] = cs[t] if cs is not None else 0.0

    def backward(grad: np.ndarray) -> list[np.ndarray | None]:
        dout = grad[:, :t].transpose(1, 0, 2)  # (T, B, H) gradient reaching each h_t from above
        dh_next = np.zeros((b, hid), dtype)
        dc_next = grad[:, t].astype(dtype, copy=True) if cs is not None else None
        dxg_all = np.empty((t, b, gh), dtype)
        dhg_all = np.empty((t, b, gh), dtype)
        for step in range(t - 1, -1, -1):
            dh = dout[step] + dh_next
            c_prev = cs[step] if cs is not None else None
            dxg, dhg, dh_direct, dc_next = kind.step_back(
                dh, dc_next, saved[step], hs[step], c_prev
            )
            dxg_all[step], dhg_all[step] = dxg, dhg
            dh_next = dhg @ w_hh + dh_direct
        flat_dxg, flat_dhg = dxg_all.reshape(t * b, gh), dhg_all.reshape(t * b, gh)
        grads: list[np.ndarray | None] = [
            (flat_dxg @ w_ih).reshape(t, b, d).transpose(1, 0, 2) if x.requires_grad else None,
            dh_next,
        ]
        if cs is not None:
            grads.append(dc_next)
        grads.append(flat_dxg.T @ x_tm.reshape(t * b, d))
        grads.append(flat_dhg.T @ hs[:-1].reshape(t * b, hid))
        if bias_ih is not None:
            grads.append(flat_dxg.sum(axis=0))
        if bias_hh is not None:
            grads.append(flat_dhg.sum(axis=0))
        return grads

    parents = [x, h0] + ([c0] if cs is not None else []) + [weight_ih, weight_hh]
    parents += [p for p in (bias_ih, bias_hh) if p is not None]
    out = Tensor.from_op(packed, parents, backward, name=mode)
    output = out[:, :t]
    h_last = out[:, t - 1]
    c_last = out[:, t] if cs is not None else None
    return output, h_last, c_last


class _RecurrentBase(Module):
    """Shared parameter setup: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, like torch."""

    mode = ""

    def _make(self, input_size: int, hidden_size: int, bias: bool, rng, dtype, suffix: str) -> None:
        gates = _cell_kind(self.mode).gates
        bound = 1.0 / np.sqrt(hidden_size)
        setattr(
            self,
            f"weight_ih{suffix}",
            uniform(rng, bound, (gates * hidden_size, input_size), dtype),
        )
        setattr(
            self,
            f"weight_hh{suffix}",
            uniform(rng, bound, (gates * hidden_size, hidden_size), dtype),
        )
        setattr(
            self,
            f"bias_ih{suffix}",
            uniform(rng, bound, (gates * hidden_size,), dtype) if bias else None,
        )
        setattr(
            self,
            f"bias_hh{suffix}",
            uniform(rng, bound, (gates * hidden_size,), dtype) if bias else None,
        )

    def _zeros(self, batch: int, like: Tensor) -> Tensor:
        return Tensor(np.zeros((batch, self.hidden_size), dtype=like.dtype))


class _Cell(_RecurrentBase):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        self.input_size, self.hidden_size = input_size, hidden_size
        self._make(input_size, hidden_size, bias, rng, dtype, "")

    def _run(self, x: Tensor, h: Tensor | None, c: Tensor | None):
        check_tensor(x, f"{type(self).__name__} input", 2)
        h = self._zeros(x.shape[0], x) if h is None else h
        if self.mode == "lstm" and c is None:
            c = self._zeros(x.shape[0], x)
        seq = x.reshape(x.shape[0], 1, x.shape[1])
        weights = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        _, h_new, c_new = recurrent_layer(self.mode, seq, h, c, *weights)
        return h_new, c_new


class RNNCell(_Cell):
    """One Elman step, as `torch.nn.RNNCell`: (x (B, D), h (B, H)) -> h' (B, H).

    weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        self.mode = f"rnn_{nonlinearity}"
        _cell_kind(self.mode)
        super().__init__(input_size, hidden_size, bias, rng=rng, dtype=dtype)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return self._run(x, h, None)[0]


class LSTMCell(_Cell):
    """One LSTM step, as `torch.nn.LSTMCell`: (x (B, D), (h, c) (B, H)) -> (h', c').

    weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,); gate blocks i, f, g, o.
    """

    mode = "lstm"

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        h, c = state if state is not None else (None, None)
        return self._run(x, h, c)


class GRUCell(_Cell):
    """One GRU step, as `torch.nn.GRUCell`: (x (B, D), h (B, H)) -> h' (B, H).

    weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,); gate blocks r, z, n.
    """

    mode = "gru"

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        return self._run(x, h, None)[0]


class _Sequence(_RecurrentBase):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        for layer in range(num_layers):
            size_in = input_size if layer == 0 else hidden_size
            self._make(size_in, hidden_size, bias, rng, dtype, f"_l{layer}")

    def _layer_weights(self, layer: int) -> tuple:
        return tuple(
            getattr(self, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        )

    def _initial(self, state: Tensor | None, x: Tensor, name: str) -> list[Tensor]:
        b = x.shape[0]
        if state is None:
            return [self._zeros(b, x) for _ in range(self.num_layers)]
        expected = (self.num_layers, b, self.hidden_size)
        if state.shape != expected:
            raise ValueError(
                f"{type(self).__name__}: {name} must have shape {expected}, got {state.shape}"
            )
        return [state[layer] for layer in range(self.num_layers)]

    def _run(self, x: Tensor, h0: Tensor | None, c0: Tensor | None):
        check_tensor(x, f"{type(self).__name__} input (B, T, D)", 3)
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"{type(self).__name__}: input {x.shape} has feature size {x.shape[2]}, "
                f"expected {self.input_size}"
            )
        hs = self._initial(h0, x, "h0")
        cs = self._initial(c0, x, "c0") if self.mode == "lstm" else [None] * self.num_layers
        h_out, c_out = [], []
        for layer in range(self.num_layers):
            x, h_n, c_n = recurrent_layer(
                self.mode, x, hs[layer], cs[layer], *self._layer_weights(layer)
            )
            h_out.append(h_n)
            c_out.append(c_n)
        h_n = stack(h_out, 0)
        c_n = stack(c_out, 0) if self.mode == "lstm" else None
        return x, h_n, c_n


class RNN(_Sequence):
    """Elman RNN over a sequence, as `torch.nn.RNN(batch_first=True)`.

    (x (B, T, D), h0 (L, B, H) or None) -> (output (B, T, H), h_n (L, B, H)).
    Parameters weight_ih_l{k} (H, D or H), weight_hh_l{k} (H, H), bias_ih_l{k}, bias_hh_l{k} (H,).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        self.mode = f"rnn_{nonlinearity}"
        _cell_kind(self.mode)
        super().__init__(input_size, hidden_size, num_layers, bias, rng=rng, dtype=dtype)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._run(x, h0, None)
        return output, h_n


class LSTM(_Sequence):
    """LSTM over a sequence, as `torch.nn.LSTM(batch_first=True)`.

    (x (B, T, D), (h0, c0) (L, B, H) or None) -> (output (B, T, H), (h_n, c_n) (L, B, H)).
    Parameters weight_ih_l{k} (4H, D or H), weight_hh_l{k} (4H, H), bias_ih_l{k} and
    bias_hh_l{k} (4H,).
    """

    mode = "lstm"

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None):
        h0, c0 = state if state is not None else (None, None)
        output, h_n, c_n = self._run(x, h0, c0)
        return output, (h_n, c_n)


class GRU(_Sequence):
    """GRU over a sequence, as `torch.nn.GRU(batch_first=True)`.

    (x (B, T, D), h0 (L, B, H) or None) -> (output (B, T, H), h_n (L, B, H)).
    Parameters weight_ih_l{k} (3H, D or H), weight_hh_l{k} (3H, H), bias_ih_l{k} and
    bias_hh_l{k} (3H,).
    """

    mode = "gru"

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        output, h_n, _ = self._run(x, h0, None)
        return output, h_n
