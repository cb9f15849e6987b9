"""PyTorch ports of the scratch models — and the proof that they are the same functions.

Layers 1 and 2 build an MLP, a CNN, a character language model and multi-head attention from
numpy. Here each gets a PyTorch twin with the *same parameterisation* (same shapes, same layouts,
same gate order), so a scratch model's weights load into its twin unchanged. If the two
implementations agree, then for the same weights and input, in float64,

    max |f_torch(x) - f_scratch(x)| ≤ 1e-10   and   max |∇θ L_torch - ∇θ L_scratch| ≤ 1e-10,

and, driven by the same data order and the same SGD, the two *training trajectories* stay
together: after 100 steps the weights agree to 1e-8 (the rounding differences of two different
summation orders stay tiny as long as training is stable). Agreement on all three is strong
evidence that the scratch autograd is right — and that the torch model trained in layer 3 is
the model the lower layers describe.

The twins are also the models the pipeline trains (``model=mlp|cnn|charlm``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import layer1_autograd as l1
import layer2_primitives as l2
from layer1_autograd.nn import ACTIVATIONS as SCRATCH_ACTIVATIONS

# The activation names are layer 1's (one registry); here each gets its torch module. A name layer 1
# adds without an entry here fails at import, not when a model asks for it.
_TORCH_ACTIVATION = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}
ACTIVATIONS: dict[str, type[nn.Module]] = {
    name: _TORCH_ACTIVATION[name] for name in SCRATCH_ACTIVATIONS
}


class MLP(nn.Module):
    """Twin of ``layer1_autograd.MLP``: Linear layers named ``layers.i``, an activation between.

    The input is flattened, so an MLP reads (B, 1, 28, 28) images as (B, 784) vectors.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got {list(sizes)}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}"
            )
        self.activation = activation
        self.layers = nn.ModuleList(
            nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], -1)  # (B, D)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)  # (B, classes)


class CifarCNN(nn.Module):
    """Twin of layer 2's CifarCNN: for each width w, Conv3x3(no bias) → BatchNorm → ReLU →
    MaxPool2; then flatten and one Linear layer.

    (B, C, H, W) → (B, w1, H/2, W/2) → ... → (B, w_last, H/2^k, W/2^k) → (B, classes).
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128),
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if not widths:
            raise ValueError("CifarCNN needs at least one width")
        side = image_size // 2 ** len(widths)
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(widths)} poolings")
        blocks: list[nn.Module] = []
        c_in = in_channels
        for w in widths:
            blocks += [
                nn.Conv2d(c_in, w, 3, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = w
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(c_in * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class CharLM(nn.Module):
    """Twin of layer 2's character language model: Embedding → LSTM/GRU/RNN(tanh) → Linear.

    ids (B, T) → embeddings (B, T, E) → hidden states (B, T, H) → logits (B, T, V).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 32,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        cells = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}
        if cell not in cells:
            raise ValueError(f"unknown recurrent cell {cell!r}; expected one of {list(cells)}")
        self.cell = cell
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = cells[cell](embed_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(self.embedding(ids))  # (B, T, H)
        return self.head(h)  # (B, T, V)


class MultiHeadAttention(nn.Module):
    """Twin of layer 2's MultiHeadAttention: q/k/v/out projections ``Linear(E, E)``, h heads.

    (B, T, E) → per head (B, h, T, E/h) → softmax(Q Kᵀ/√(E/h) + mask) V → concat → out_proj.
    Masks follow torch: ``attn_mask`` bool, True = may attend; ``key_padding_mask`` (B, T_k)
    bool, True = padding (never attended to).
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, E) -> (B, h, T, E/h)
        return x.view(b, t, self.num_heads, -1).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        *,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (
            self._split(self.q_proj(query)),
            self._split(self.k_proj(key)),
            self._split(self.v_proj(value)),
        )
        mask = attn_mask
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)
            mask = keep if mask is None else mask & keep
        if is_causal:
            t_q, t_k = q.shape[-2], k.shape[-2]
            causal = torch.ones(t_q, t_k, dtype=torch.bool, device=q.device).tril()
            mask = causal if mask is None else mask & causal
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T_q, E/h)
        b, _, t_q, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, t_q, self.embed_dim))


# ----------------------------------------------------------------------------- porting


def scratch_state(scratch: l1.Module) -> dict[str, np.ndarray]:
    """A scratch model's parameters and buffers, keyed like torch's ``state_dict``."""
    return l2.state_arrays(scratch)


def twin_of(scratch: l1.Module) -> nn.Module:
    """An (uninitialised-weights) PyTorch twin with the scratch model's architecture."""
    if isinstance(scratch, l1.MLP):
        sizes = [scratch.layers[0].in_features] + [lin.out_features for lin in scratch.layers]
        return MLP(sizes, scratch.activation)
    if isinstance(scratch, l2.CifarCNN):
        return CifarCNN(
            scratch.in_channels, scratch.widths, scratch.classifier.out_features, scratch.image_size
        )
    if isinstance(scratch, l2.CharLM):
        vocab, embed = scratch.embedding.weight.shape
        rnn = scratch.rnn
        return CharLM(vocab, embed, rnn.hidden_size, scratch.cell, rnn.num_layers)
    if isinstance(scratch, l2.MultiHeadAttention):
        return MultiHeadAttention(
            scratch.embed_dim, scratch.num_heads, scratch.q_proj.bias is not None
        )
    raise TypeError(f"no PyTorch twin for {type(scratch).__name__}")


def port(scratch: l1.Module) -> nn.Module:
    """The PyTorch twin of ``scratch`` carrying its weights (and buffers), in its float dtype."""
    state = scratch_state(scratch)
    twin = twin_of(scratch)
    float_dtypes = {v.dtype for v in state.values() if np.issubdtype(v.dtype, np.floating)}
    if len(float_dtypes) != 1:
        raise TypeError(f"scratch model mixes float dtypes {sorted(map(str, float_dtypes))}")
    twin = twin.to(torch.from_numpy(np.zeros(0, dtype=float_dtypes.pop())).dtype)
    expected = set(twin.state_dict())
    if set(state) != expected:
        raise KeyError(
            f"state names differ: scratch-only {sorted(set(state) - expected)}, "
            f"torch-only {sorted(expected - set(state))}"
        )
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return twin


# ----------------------------------------------------------------------------- the proof


@dataclass
class PortCase:
    """One scratch model, its twin, data, and how each side computes outputs and the loss."""

    name: str
    scratch: l1.Module
    batches: list[tuple[np.ndarray, np.ndarray]]
    scratch_out: Callable[[l1.Module, np.ndarray], l1.Tensor]
    torch_out: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    scratch_loss: Callable[[l1.Tensor, np.ndarray], l1.Tensor]
    torch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _ce_scratch(out: l1.Tensor, y: np.ndarray) -> l1.Tensor:
    return l1.F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _ce_torch(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _mse_torch(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).square().mean()


def port_cases(seed: int = 0, n_batches: int = 10) -> list[PortCase]:
    """Small float64 instances of every ported model with fixed random data."""
    rng = np.random.default_rng(seed)
    f64 = np.float64

    def images(b, c, s, k):
        return [(rng.normal(size=(b, c, s, s)), rng.integers(0, k, b)) for _ in range(n_batches)]

    def texts(b, t, v):
        return [(rng.integers(0, v, (b, t)), rng.integers(0, v, (b, t))) for _ in range(n_batches)]

    def charlm(cell):
        model = l2.CharLM(11, 8, 12, cell, rng=rng, dtype=f64)
        return PortCase(
            f"charlm_{cell}",
            model,
            texts(4, 10, 11),
            lambda m, x: m(x)[0],
            lambda m, x: m(x),
            _ce_scratch,
            _ce_torch,
        )

    mlp_batches = [(rng.normal(size=(16, 20)), rng.integers(0, 5, 16)) for _ in range(n_batches)]
    attn_batches = [
        (rng.normal(size=(3, 7, 16)), rng.normal(size=(3, 7, 16))) for _ in range(n_batches)
    ]
    return [
        PortCase(
            "mlp",
            l1.MLP([20, 16, 5], "relu", rng=rng, dtype=f64),
            mlp_batches,
            lambda m, x: m(l1.Tensor(x)),
            lambda m, x: m(x),
            _ce_scratch,
            _ce_torch,
        ),
        PortCase(
            "cifar_cnn",
            l2.CifarCNN((4, 8), in_channels=3, num_classes=5, image_size=8, rng=rng, dtype=f64),
            images(6, 3, 8, 5),
            lambda m, x: m(l1.Tensor(x)),
            lambda m, x: m(x),
            _ce_scratch,
            _ce_torch,
        ),
        charlm("lstm"),
        charlm("gru"),
        PortCase(
            "attention",
            l2.MultiHeadAttention(16, 4, rng=rng, dtype=f64),
            attn_batches,
            lambda m, x: m(l1.Tensor(x), is_causal=True),
            lambda m, x: m(x, is_causal=True),
            l1.F.mse_loss,
            _mse_torch,
        ),
    ]


def _max_diff(a: dict[str, np.ndarray], b: dict[str, Any]) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a[k], dtype=np.float64) - _np(b[k])), initial=0.0))
        for k in a
    )


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded: these models are tiny, and on a busy machine the idle spinning
    of a second OpenMP thread makes small ops 10-20x slower. Results do not depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@_one_thread()
def compare_outputs_and_grads(case: PortCase) -> tuple[float, float]:
    """(max |Δ output|, max |Δ gradient|) over all parameters, on the case's first batch."""
    twin = port(case.scratch)
    x, y = case.batches[0]
    out_s = case.scratch_out(case.scratch, x)
    case.scratch.zero_grad()
    case.scratch_loss(out_s, y).backward()
    out_t = case.torch_out(twin, torch.from_numpy(x))
    case.torch_loss(out_t, torch.from_numpy(y)).backward()
    out_diff = float(np.max(np.abs(out_s.data - _np(out_t))))
    grads_s = {n: p.grad for n, p in case.scratch.named_parameters()}
    grads_t = {n: p.grad for n, p in twin.named_parameters()}
    if set(grads_s) != set(grads_t):
        raise KeyError(f"parameter names differ: {sorted(set(grads_s) ^ set(grads_t))}")
    case.scratch.zero_grad()
    return out_diff, _max_diff(grads_s, grads_t)


@_one_thread()
def compare_trajectories(
    case: PortCase, steps: int = 100, lr: float = 0.05, momentum: float = 0.9
) -> tuple[float, float]:
    """Train scratch and twin side by side with SGD on the same batch order for ``steps``.

    Returns (largest difference between their final parameters and buffers, largest change of
    a parameter over the run — evidence that the trajectories went somewhere)."""
    twin = port(case.scratch)
    start = {n: p.data.copy() for n, p in case.scratch.named_parameters()}
    names = [n for n, _ in case.scratch.named_parameters()]
    twin_params = dict(twin.named_parameters())
    opt_s = l1.SGD(case.scratch.parameters(), lr=lr, momentum=momentum)
    opt_t = torch.optim.SGD([twin_params[n] for n in names], lr=lr, momentum=momentum)
    for step in range(steps):
        x, y = case.batches[step % len(case.batches)]
        opt_s.zero_grad()
        case.scratch_loss(case.scratch_out(case.scratch, x), y).backward()
        opt_s.step()
        opt_t.zero_grad()
        case.torch_loss(case.torch_out(twin, torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt_t.step()
    moved = _max_diff(start, {n: p.data for n, p in case.scratch.named_parameters()})
    return _max_diff(scratch_state(case.scratch), twin.state_dict()), moved
