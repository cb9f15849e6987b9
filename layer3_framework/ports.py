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

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    """Twin of ``layer1_autograd.MLP``: Linear layers named ``layers.i``, an activation between.

    The input is flattened, so an MLP reads (B, 1, 28, 28) images as (B, 784) vectors.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got {list(sizes)}")
        if activation not in ACTIVATIONS and activation != "identity":
            raise ValueError(
                f"unknown activation {activation!r}; expected one of {list(ACTIVATIONS)}"
            )
        self.activation = activation
        self.layers = nn.ModuleList(
            nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.act = ACTIVATIONS[activation]() if activation in ACTIVATIONS else nn.Identity()

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
