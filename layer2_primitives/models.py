"""The models layer 2's deliverables train, built only from this layer's primitives.

CifarCNN(widths=(32, 64, 128)): for each width w
    Conv2d(c_in, w, 3, padding=1, bias=False) -> BatchNorm2d(w) -> ReLU -> MaxPool2d(2)
then flatten (N, w_last * s * s) with s = image_size / 2^len(widths) -> Linear(., num_classes).
Parameter names mirror a torch `nn.Sequential` called `features` plus an `nn.Linear` called
`classifier`: features.{4k}.weight (conv k), features.{4k+1}.{weight, bias, running_mean,
running_var, num_batches_tracked} (batch norm k), classifier.{weight, bias}.

CharLM(vocab_size, embed_dim, hidden_size, cell): Embedding -> LSTM | GRU | RNN -> Linear.
Names: embedding.weight, rnn.{weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0},
head.{weight, bias}; ids (B, T) -> logits (B, T, vocab), plus the recurrent state.

ReversalAttention(vocab_size, seq_len, embed_dim, num_heads): token + learned position
embeddings -> MultiHeadAttention -> Linear; trained to output its input reversed, the attention
must learn to look from position i at position T - 1 - i (an anti-diagonal pattern).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layer1_autograd import Linear, Module, Tensor
from layer2_primitives.activations import ReLU
from layer2_primitives.attention import MultiHeadAttention
from layer2_primitives.conv import Conv2d
from layer2_primitives.embedding import Embedding
from layer2_primitives.normalization import BatchNorm2d
from layer2_primitives.pool import MaxPool2d
from layer2_primitives.recurrent import GRU, LSTM, RNN


class CifarCNN(Module):
    """Conv-BN-ReLU-MaxPool stages then a linear classifier. (N, C, H, W) -> (N, num_classes)."""

    def __init__(
        self,
        widths: Sequence[int] = (32, 64, 128),
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        if image_size % 2 ** len(widths):
            raise ValueError(f"image_size={image_size} must be divisible by 2^{len(widths)}")
        self.widths, self.in_channels, self.image_size = tuple(widths), in_channels, image_size
        self.features: list[Module] = []
        c_in = in_channels
        for w in widths:
            self.features += [
                Conv2d(c_in, w, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                BatchNorm2d(w, dtype=dtype),
                ReLU(),
                MaxPool2d(2),
            ]
            c_in = w
        side = image_size // 2 ** len(widths)
        self.classifier = Linear(c_in * side * side, num_classes, rng=rng, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            size = self.image_size
            raise ValueError(
                f"CifarCNN expects (N, {self.in_channels}, {size}, {size}), got {x.shape}"
            )
        for layer in self.features:
            x = layer(x)
        return self.classifier(x.reshape(x.shape[0], -1))


class CharLM(Module):
    """Character language model: Embedding -> recurrent layer -> Linear to the vocabulary."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        cell: str = "lstm",
        num_layers: int = 1,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        kinds = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
        if cell not in kinds:
            raise ValueError(f"CharLM cell must be one of {sorted(kinds)}, got {cell!r}")
        self.cell = cell
        self.embedding = Embedding(vocab_size, embed_dim, rng=rng, dtype=dtype)
        self.rnn = kinds[cell](embed_dim, hidden_size, num_layers, rng=rng, dtype=dtype)
        self.head = Linear(hidden_size, vocab_size, rng=rng, dtype=dtype)

    def forward(self, ids: np.ndarray, state=None):
        """ids (B, T) ints -> (logits (B, T, V), state); state is h_n, or (h_n, c_n) for LSTM."""
        hidden, state = self.rnn(self.embedding(ids), state)
        return self.head(hidden), state


class ReversalAttention(Module):
    """One attention layer that can reverse a sequence. ids (B, T) -> logits (B, T, V)."""

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        embed_dim: int,
        num_heads: int = 1,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        self.seq_len = seq_len
        self.token = Embedding(vocab_size, embed_dim, rng=rng, dtype=dtype)
        self.position = Embedding(seq_len, embed_dim, rng=rng, dtype=dtype)
        self.attention = MultiHeadAttention(embed_dim, num_heads, rng=rng, dtype=dtype)
        self.head = Linear(embed_dim, vocab_size, rng=rng, dtype=dtype)

    def forward(self, ids: np.ndarray, need_weights: bool = False):
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] != self.seq_len:
            raise ValueError(f"ReversalAttention expects ids (B, {self.seq_len}), got {ids.shape}")
        x = self.token(ids) + self.position(np.arange(self.seq_len))  # (B, T, E)
        out, weights = self.attention(x, need_weights=True)
        logits = self.head(out)
        return (logits, weights) if need_weights else logits
