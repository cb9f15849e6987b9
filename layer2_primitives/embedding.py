"""Embedding: a lookup table, the linear map of a one-hot vector done as indexing.

weight W (num_embeddings, embedding_dim), initialised N(0, 1) like torch. For integer ids of any
shape (*):

    y[...] = W[ids[...]]                          (*) -> (*, embedding_dim)
    dL/dW[j] = sum over positions with ids == j of dL/dy[position]

The backward is a scatter-add (np.add.at), since an id may appear many times in a batch.
"""

from __future__ import annotations

import numpy as np

from layer1_autograd import Module, Tensor


def embedding(ids: np.ndarray, weight: Tensor) -> Tensor:
    """Rows of `weight` (V, E) picked by integer `ids` (*) -> (*, E), as `F.embedding`."""
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be an integer array, got dtype {ids.dtype}")
    num = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= num):
        raise ValueError(
            f"embedding ids must be in [0, {num}), got values in [{ids.min()}, {ids.max()}]"
        )

    def backward(grad: np.ndarray) -> list[np.ndarray]:
        dw = np.zeros(weight.shape, dtype=weight.dtype)
        np.add.at(dw, ids.reshape(-1), grad.reshape(-1, weight.shape[1]))
        return [dw]

    return Tensor.from_op(weight.data[ids], [weight], backward, name="embedding")


class Embedding(Module):
    """Lookup table, as `torch.nn.Embedding`: weight (num_embeddings, embedding_dim) ~ N(0, 1)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        rng: np.random.Generator,
        dtype: type = np.float32,
    ) -> None:
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(
                f"Embedding sizes must be positive, got ({num_embeddings}, {embedding_dim})"
            )
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        weight = rng.standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        self.weight = Tensor(weight, requires_grad=True)

    def forward(self, ids: np.ndarray) -> Tensor:
        return embedding(ids, self.weight)
