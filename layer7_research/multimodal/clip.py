"""A tiny CLIP: contrastive image–text pre-training on CIFAR-10 and its class captions.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"
(https://arxiv.org/abs/2103.00020). Two encoders map a batch of B images and B captions into one
d-dimensional space, L2-normalised; a learned temperature sets the sharpness of their cosines:

    I = f(x) / ‖f(x)‖,   T = g(c) / ‖g(c)‖,          I, T ∈ R^{B×d}
    logits Z = exp(t) · I Tᵀ,                         t learned, t₀ = log(1/0.07), exp(t) ≤ 100
    L = ½ [CE(Z, P) + CE(Zᵀ, P')],   CE(Z, P) = −(1/B) Σ_i Σ_j P_ij log softmax(Z_i)_j

CLIP's targets are ``P = I_B`` (caption i belongs to image i). Here the captions are built from
10 class names, so a batch holds many images of the same class, and a caption of class c
describes *every* image of class c: penalising the other same-class pairs as negatives would
teach the model to separate identical descriptions. **Choice: targets spread over the same-class
captions**, ``P_ij = [y_i = y_j] / Σ_k [y_i = y_k]`` (rows of images over captions; the column
problem's targets P' are the same construction over images, and since caption j carries image
j's label, P' = P); with distinct labels P is CLIP's identity. :func:`clip_loss` computes it.

- image encoder f: layer 3's :class:`~layer3_framework.ports.CifarCNN` (conv–BN–ReLU–pool
  blocks), whose final linear layer is the image projection into R^d;
- text encoder g: word embeddings averaged over the caption (an embedding bag), then an MLP
  whose last linear layer is the text projection; words come from :class:`WordVocab`, fitted on
  the *training* captions only, so a word that only a held-out template uses is ``[UNK]``;
- zero-shot classification (:func:`class_embeddings`, :func:`zero_shot_predict`): each class's
  prompt embeddings (one per template) averaged and renormalised (CLIP's prompt ensemble), and an
  image is given the class of the nearest one, ``ŷ = argmax_c I · T_c``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.ports import CifarCNN
from layer3_framework.task import Logs, Sums, Task

TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a photo of the small {}.",
    "a photo of the big {}.",
    "a close-up photo of a {}.",
    "a bright photo of the {}.",
    "a picture of a {}.",
    "an image of the {}.",
)
# held out: new combinations of the training words, and one word ("good") never trained
HELDOUT_TEMPLATES = (
    "a blurry picture of the {}.",
    "a close-up image of a small {}.",
    "a bright picture of a big {}.",
    "a good photo of the {}.",
)
PAD, UNK = "[PAD]", "[UNK]"
WORD = re.compile(r"[a-z0-9-]+")


class WordVocab:
    """Words of the training captions: ``[PAD]`` = 0, ``[UNK]`` = 1, then the sorted words."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = [PAD, UNK, *sorted(set(words) - {PAD, UNK})]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def fit(cls, captions: Sequence[str]) -> WordVocab:
        return cls([w for c in captions for w in WORD.findall(c.lower())])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, captions: Sequence[str], length: int) -> torch.Tensor:
        """(N,) captions -> (N, length) int64 ids, right-padded with 0; too long is an error."""
        out = torch.zeros(len(captions), length, dtype=torch.long)
        for i, c in enumerate(captions):
            ids = [self.index.get(w, 1) for w in WORD.findall(c.lower())]
            if not 1 <= len(ids) <= length:
                raise ValueError(f"caption {c!r} has {len(ids)} words; expected 1..{length}")
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def caption_table(
    vocab: WordVocab, class_names: Sequence[str], templates: Sequence[str], length: int = 12
) -> torch.Tensor:
    """Ids (C, M, L) of template m filled with class c."""
    caps = [t.format(name) for name in class_names for t in templates]
    return vocab.encode(caps, length).view(len(class_names), len(templates), length)


class TextEncoder(nn.Module):
    """Caption ids (N, L) -> (N, d): mean word embedding over the real words, then an MLP."""

    def __init__(self, vocab_size: int, width: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, embed_dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).to(self.embed.weight.dtype)[..., None]  # (N, L, 1)
        if bool((mask.sum(dim=1) == 0).any()):
            raise ValueError("a caption has no words (all padding)")
        bag = (self.embed(ids) * mask).sum(dim=1) / mask.sum(dim=1)  # (N, width)
        return self.mlp(bag)  # (N, d): the last linear layer is the text projection


class CLIP(nn.Module):
    """``CLIP(vocab_size, ...)``; forward(images (B, 3, H, W), ids (M, L)) -> logits (B, M)."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 64,
        text_width: int = 64,
        widths: Sequence[int] = (32, 64, 128),
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        if init_temperature <= 0 or 1 / init_temperature > max_logit_scale:
            raise ValueError(
                f"need 0 < init_temperature and 1/init_temperature <= max_logit_scale; got "
                f"{init_temperature=}, {max_logit_scale=}"
            )
        self.image_encoder = CifarCNN(3, tuple(widths), embed_dim)  # its last layer: projection
        self.text_encoder = TextEncoder(vocab_size, text_width, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))  # t
        self.max_log_scale = math.log(max_logit_scale)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(images), dim=-1)  # (B, d), unit rows

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_encoder(ids), dim=-1)  # (M, d), unit rows

    def scale(self) -> torch.Tensor:
        """exp(t), t clamped at log(max_logit_scale) as CLIP clips it (at 100)."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.scale() * self.encode_image(images) @ self.encode_text(ids).T  # (B, M)


def same_class_targets(labels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """P (B, B): row i spread uniformly over the j with y_j = y_i (the identity if all differ)."""
    same = (labels[:, None] == labels[None, :]).to(dtype)  # (B, B)
    return same / same.sum(dim=1, keepdim=True)


def clip_loss(logits: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE ½[CE(rows) + CE(columns)] of logits (B, B) (images × captions);
    targets: the identity, or with ``labels`` spread over same-class captions."""
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"clip_loss needs square logits (B, B), got {tuple(logits.shape)}")
    if labels is None:
        target = torch.eye(len(logits), dtype=logits.dtype, device=logits.device)
    else:
        target = same_class_targets(labels, logits.dtype)  # (B, B), rows sum to 1
    rows = F.cross_entropy(logits, target)  # images -> captions
    cols = F.cross_entropy(logits.T, target)  # captions -> images (P' = P, see the docstring)
    return (rows + cols) / 2


@torch.no_grad()
def class_embeddings(model: CLIP, prompts: torch.Tensor) -> torch.Tensor:
    """Prompt ids (C, M, L) -> (C, d): each class's M prompt embeddings averaged, renormalised."""
    c, m, length = prompts.shape
    t = model.encode_text(prompts.reshape(c * m, length)).view(c, m, -1)  # (C, M, d)
    return F.normalize(t.mean(dim=1), dim=-1)


def zero_shot_predict(image_emb: torch.Tensor, class_emb: torch.Tensor) -> torch.Tensor:
    """(B, d) image embeddings, (C, d) class embeddings -> (B,) argmax_c I · T_c."""
    return (image_emb @ class_emb.T).argmax(dim=-1)


class CLIPTask(Task):
    """CIFAR (image, label) batches -> the contrastive loss: each image's caption is a training
    template (drawn per sample from a generator seeded by (seed, step), so a resumed run draws
    the same) filled with its class; evaluation is zero-shot accuracy with ``eval_prompts``."""

    def __init__(
        self, model: CLIP, captions: torch.Tensor, eval_prompts: torch.Tensor, seed: int = 0
    ) -> None:
        super().__init__()
        self.model, self.seed = model, seed
        self.register_buffer("captions", captions, persistent=False)  # (C, M, L)
        self.register_buffer("eval_prompts", eval_prompts, persistent=False)  # (C, M', L)

    def training_step(self, batch: Any, step: int, optimizer: str = "main") -> tuple[Any, Logs]:
        x, y = batch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        which = torch.randint(self.captions.shape[1], (len(y),), generator=g).to(y.device)
        logits = self.model(x, self.captions[y, which])  # (B, B): image i vs caption j
        loss = clip_loss(logits.float(), y)
        return loss, {"temperature": 1.0 / self.model.scale().detach()}

    def validation_step(self, batch: Any) -> Sums:
        x, y = batch
        pred = zero_shot_predict(
            self.model.encode_image(x), class_embeddings(self.model, self.eval_prompts)
        )
        return {"zero_shot_accuracy": ((pred == y).sum(), len(y))}
