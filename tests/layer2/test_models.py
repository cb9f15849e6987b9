"""CifarCNN and CharLM against PyTorch twins built from torch.nn with the same names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer1_autograd import F, Tensor
from layer2_primitives import CharLM, CifarCNN, ReversalAttention, state_arrays
from tests.layer2.torch_compare import assert_close, compare_grads


class TorchCifarCNN(torch.nn.Module):
    def __init__(self, widths, image_size=32):
        super().__init__()
        layers, c = [], 3
        for w in widths:
            layers += [torch.nn.Conv2d(c, w, 3, padding=1, bias=False), torch.nn.BatchNorm2d(w)]
            layers += [torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
            c = w
        self.features = torch.nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.classifier = torch.nn.Linear(c * side * side, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class TorchCharLM(torch.nn.Module):
    def __init__(self, vocab, embed, hidden, cell):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = rnn(embed, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embedding(ids), state)
        return self.head(out), state


def _load_into_torch(ours, theirs):
    state = state_arrays(ours)
    ref = theirs.state_dict()
    assert sorted(state) == sorted(ref), f"{sorted(state)} vs {sorted(ref)}"
    theirs.load_state_dict({k: torch.tensor(v).reshape(ref[k].shape) for k, v in state.items()})


def test_cifar_cnn_matches_torch_twin(rng):
    ours = CifarCNN((4, 6, 8), rng=rng, dtype=np.float64)
    theirs = TorchCifarCNN((4, 6, 8)).double()
    _load_into_torch(ours, theirs)
    x, y = rng.normal(size=(3, 3, 32, 32)), rng.integers(0, 10, 3)
    for train in (True, False):  # a training step (batch statistics), then eval (running ones)
        ours.train(train)
        theirs.train(train)
        ours.zero_grad()
        theirs.zero_grad()
        loss = F.cross_entropy(ours(Tensor(x)), y)
        ref = torch.nn.functional.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
        loss.backward()
        ref.backward()
        assert_close(loss, ref, f"loss (train={train})")
        compare_grads(ours, theirs)
    with pytest.raises(
        ValueError, match=r"CifarCNN expects \(N, 3, 32, 32\), got \(1, 3, 28, 28\)"
    ):
        ours(Tensor(np.zeros((1, 3, 28, 28))))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_char_lm_matches_torch_twin(cell, rng):
    ours = CharLM(11, 5, 7, cell, rng=rng, dtype=np.float64)
    theirs = TorchCharLM(11, 5, 7, cell).double()
    _load_into_torch(ours, theirs)
    ids = rng.integers(0, 11, size=(3, 6))
    logits, state = ours(ids[:, :3])
    logits2, _ = ours(ids[:, 3:], state)  # carried state (not detached): BPTT through both
    ref, ref_state = theirs(torch.tensor(ids[:, :3]))
    ref2, _ = theirs(torch.tensor(ids[:, 3:]), ref_state)
    target = rng.integers(0, 11, size=(3 * 6,))
    loss = F.cross_entropy(logits.reshape(-1, 11), target[:9]) + F.cross_entropy(
        logits2.reshape(-1, 11), target[9:]
    )
    ref_loss = torch.nn.functional.cross_entropy(
        ref.reshape(-1, 11), torch.tensor(target[:9])
    ) + torch.nn.functional.cross_entropy(ref2.reshape(-1, 11), torch.tensor(target[9:]))
    loss.backward()
    ref_loss.backward()
    assert_close(logits2, ref2, "logits of the second chunk")
    compare_grads(ours, theirs)


def test_model_argument_errors(rng):
    with pytest.raises(ValueError, match="cell must be one of"):
        CharLM(5, 4, 4, "transformer", rng=rng)
    with pytest.raises(ValueError, match="divisible by 2"):
        CifarCNN((4, 4), image_size=6, rng=rng)
    model = ReversalAttention(5, 4, 8, rng=rng)
    assert model(np.zeros((2, 4), np.int64)).shape == (2, 4, 5)
    with pytest.raises(ValueError, match=r"expects ids \(B, 4\), got \(2, 3\)"):
        model(np.zeros((2, 3), np.int64))
