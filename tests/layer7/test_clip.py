"""Tiny CLIP (layer7_research.multimodal.clip): the symmetric InfoNCE loss against an independent
numpy computation, the temperature's gradient against finite differences, zero-shot
classification on toys whose answer is known, and a short training run on separable images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layer3_framework.trainer import Trainer, TrainerConfig
from layer7_research.multimodal import (
    CLIP,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    CLIPTask,
    WordVocab,
    caption_table,
    class_embeddings,
    clip_loss,
    zero_shot_predict,
)


def _numpy_loss(img: np.ndarray, txt: np.ndarray, scale: float, labels: np.ndarray) -> float:
    """½[CE(Z, P) + CE(Zᵀ, P')], written with loops over the pairs and a log-sum-exp."""
    z = scale * img @ txt.T
    b = len(labels)

    def ce(logits: np.ndarray, owner: np.ndarray, other: np.ndarray) -> float:
        total = 0.0
        for i in range(b):
            m = logits[i].max()
            log_norm = m + math.log(sum(math.exp(v - m) for v in logits[i]))
            same = [j for j in range(b) if other[j] == owner[i]]
            total -= sum((logits[i, j] - log_norm) / len(same) for j in same)
        return total / b

    return 0.5 * (ce(z, labels, labels) + ce(z.T, labels, labels))


def test_loss_matches_numpy_with_same_class_duplicates():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((12, 8))
    txt = rng.standard_normal((12, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    txt /= np.linalg.norm(txt, axis=1, keepdims=True)
    labels = np.array([0, 1, 1, 2, 0, 3, 1, 2, 2, 4, 0, 1])  # duplicates of classes 0, 1, 2
    logits = 14.0 * torch.from_numpy(img) @ torch.from_numpy(txt).T
    got = clip_loss(logits, torch.from_numpy(labels))
    assert float(got) == pytest.approx(_numpy_loss(img, txt, 14.0, labels), abs=1e-10)


def test_distinct_labels_give_clips_identity_targets():
    logits = torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    arange = torch.arange(6)
    want = (F.cross_entropy(logits, arange) + F.cross_entropy(logits.T, arange)) / 2
    torch.testing.assert_close(clip_loss(logits), want)
    torch.testing.assert_close(clip_loss(logits, torch.tensor([5, 3, 0, 1, 2, 4])), want)
    with pytest.raises(ValueError, match=r"square logits \(B, B\), got \(2, 3\)"):
        clip_loss(torch.zeros(2, 3))


def _tiny_clip(seed: int = 0) -> tuple[CLIP, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    vocab = WordVocab.fit([t.format(c) for t in TRAIN_TEMPLATES for c in ("cat", "dog", "frog")])
    model = CLIP(len(vocab), embed_dim=8, text_width=8, widths=(4, 8)).double()
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 1])
    ids = caption_table(vocab, ("cat", "dog", "frog"), TRAIN_TEMPLATES)[y, torch.arange(6) % 8]
    return model, x, y, ids


def test_temperature_gradient_matches_finite_differences():
    model, x, y, ids = _tiny_clip()
    assert float(model.logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))
    loss = clip_loss(model(x, ids), y)
    (grad,) = torch.autograd.grad(loss, model.logit_scale)
    h, t0 = 1e-6, float(model.logit_scale.detach())
    with torch.no_grad():
        model.logit_scale.fill_(t0 + h)
        up = float(clip_loss(model(x, ids), y))
        model.logit_scale.fill_(t0 - h)
        down = float(clip_loss(model(x, ids), y))
    assert float(grad) == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)
    assert abs(float(grad)) > 1e-4  # a real gradient, not a vacuous zero


def test_temperature_is_clamped_at_a_logit_scale_of_100():
    model, x, y, ids = _tiny_clip()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(500.0))
    assert float(model.scale().detach()) == pytest.approx(100.0)
    loss = clip_loss(model(x, ids), y)
    (grad,) = torch.autograd.grad(loss, model.logit_scale)
    assert float(grad) == 0.0
    with pytest.raises(ValueError, match="init_temperature"):
        CLIP(10, init_temperature=0.001)


class _KnownText:
    """encode_text where caption ids (·, L) map to fixed unit vectors: the class word (id at
    position 1) gives direction e_class, the template (id at position 0) adds a small tilt."""

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        v = F.one_hot(ids[:, 1], 4).double() + 0.3 * F.one_hot(ids[:, 0] % 4, 4).double()
        return F.normalize(v, dim=-1)


def test_class_embeddings_average_the_normalised_prompts_and_renormalise():
    prompts = torch.tensor([[[0, c], [1, c], [2, c]] for c in range(4)])  # (C=4, M=3, L=2)
    got = class_embeddings(_KnownText(), prompts)
    want = np.zeros((4, 4))
    for c in range(4):
        vs = []
        for t in range(3):
            v = np.eye(4)[c] + 0.3 * np.eye(4)[t % 4]
            vs.append(v / np.linalg.norm(v))
        m = np.mean(vs, axis=0)
        want[c] = m / np.linalg.norm(m)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_zero_shot_predicts_the_class_whose_prompt_is_nearest():
    gen = torch.Generator().manual_seed(2)
    classes = F.normalize(torch.randn(5, 16, generator=gen), dim=-1)
    truth = torch.randint(5, (200,), generator=gen)
    images = F.normalize(classes[truth] + 0.05 * torch.randn(200, 16, generator=gen), dim=-1)
    assert torch.equal(zero_shot_predict(images, classes), truth)
    # the answer is the argmax of the cosines, not the class order
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert torch.equal(zero_shot_predict(images, classes[perm]), torch.argsort(perm)[truth])


def test_vocab_maps_unseen_words_to_unk_and_pads():
    vocab = WordVocab.fit([t.format("cat") for t in TRAIN_TEMPLATES])
    ids = vocab.encode(["a good photo of the cat.", "cat"], length=7)
    assert ids[0, :6].tolist() == [vocab.index[w] if w in vocab.index else 1
                                   for w in "a good photo of the cat".split()]  # fmt: skip
    assert ids[0, 1] == 1 and ids[0, 6] == 0 and ids[1, 1:].eq(0).all()
    assert "good" in HELDOUT_TEMPLATES[-1] and "good" not in vocab.index
    with pytest.raises(ValueError, match="expected 1..3"):
        vocab.encode(["a photo of a cat"], length=3)


def _separable_images(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c's images: a fixed random pattern of class c plus noise (linearly separable)."""
    protos = torch.randn(3, 3, 8, 8, generator=gen)
    y = torch.randint(3, (n,), generator=gen)
    return protos[y] + 0.8 * torch.randn(n, 3, 8, 8, generator=gen), y


@pytest.mark.slow
def test_training_makes_zero_shot_from_held_out_prompts_work():
    gen = torch.Generator().manual_seed(3)
    names = ("cat", "dog", "frog")
    vocab = WordVocab.fit([t.format(c) for t in TRAIN_TEMPLATES for c in names])
    torch.manual_seed(3)
    model = CLIP(len(vocab), embed_dim=16, text_width=16, widths=(8,))
    model.image_encoder.classifier = torch.nn.Linear(8 * 4 * 4, 16)  # 8x8 inputs, one pooling
    task = CLIPTask(model, caption_table(vocab, names, TRAIN_TEMPLATES),
                    caption_table(vocab, names, HELDOUT_TEMPLATES), seed=0)  # fmt: skip
    x, y = _separable_images(128, gen)
    loader = torch.utils.data.DataLoader(list(zip(x, y, strict=True)), batch_size=32, shuffle=True)
    cfg = TrainerConfig(max_steps=40, log_every=20, progress=False)
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    trainer = Trainer(task, optimizer, loader, cfg, eval_loader=loader)
    before = trainer.evaluate()["zero_shot_accuracy"]
    history = trainer.fit()
    after = trainer.evaluate()["zero_shot_accuracy"]
    assert after > 0.95 and after > before, (before, after)  # chance is 1/3
    assert history["train/temperature"] != pytest.approx(0.07)  # the temperature was learned
