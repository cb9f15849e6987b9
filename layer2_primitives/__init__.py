"""Layer 2: the reusable neural-network primitives, written on layer 1's Tensor (numpy only).

Each concept is a module with a Module class mirroring torch.nn's names and parameter layouts
(so weights copy straight into a PyTorch twin) and, where speed matters, a fused functional op
built with `Tensor.from_op` and a hand-derived backward:

- linear.py: Linear (layer 1's).            - activations.py: ReLU, GELU, SiLU, Tanh, Sigmoid
- conv.py: Conv2d (im2col, stride/padding/groups)   - pool.py: MaxPool2d, AvgPool2d
- normalization.py: BatchNorm1d/2d, LayerNorm, GroupNorm   - dropout.py: Dropout
- embedding.py: Embedding                    - recurrent.py: RNN/LSTM/GRU cells and sequences
- attention.py: scaled_dot_product_attention, MultiHeadAttention
- residual.py: ResidualBlock                 - state.py: parameters + buffers as torch names
- models.py: CifarCNN, CharLM, ReversalAttention   - training.py: augmentation, normalisation
- char_lm.py: truncated-BPTT training and sampling of a CharLM   - reversal.py: the reversal task
- deliverables/: one module per deliverable (orchestration: train, measure, plot)
"""

from layer2_primitives.activations import GELU, ReLU, Sigmoid, SiLU, Tanh, silu
from layer2_primitives.attention import MultiHeadAttention, scaled_dot_product_attention
from layer2_primitives.conv import Conv2d, conv2d
from layer2_primitives.dropout import Dropout, dropout
from layer2_primitives.embedding import Embedding, embedding
from layer2_primitives.linear import Linear
from layer2_primitives.models import CharLM, CifarCNN, ReversalAttention
from layer2_primitives.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    GroupNorm,
    LayerNorm,
    batch_norm,
    group_norm,
    layer_norm,
)
from layer2_primitives.pool import AvgPool2d, MaxPool2d, avg_pool2d, max_pool2d
from layer2_primitives.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, recurrent_layer
from layer2_primitives.residual import ResidualBlock
from layer2_primitives.state import load_state_arrays, named_buffers, state_arrays

__all__ = [
    "GELU",
    "GRU",
    "LSTM",
    "RNN",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "CharLM",
    "CifarCNN",
    "Conv2d",
    "Dropout",
    "Embedding",
    "GRUCell",
    "GroupNorm",
    "LSTMCell",
    "LayerNorm",
    "Linear",
    "MaxPool2d",
    "MultiHeadAttention",
    "RNNCell",
    "ReLU",
    "ResidualBlock",
    "ReversalAttention",
    "SiLU",
    "Sigmoid",
    "Tanh",
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "dropout",
    "embedding",
    "group_norm",
    "layer_norm",
    "load_state_arrays",
    "max_pool2d",
    "named_buffers",
    "recurrent_layer",
    "scaled_dot_product_attention",
    "silu",
    "state_arrays",
]
