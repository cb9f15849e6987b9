"""BERT: a bidirectional Transformer encoder pre-trained by masked-language modelling (MLM).

Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding". The encoder is GPT's stack (:class:`~.gpt.Block`, same embeddings, positions,
norms, init) with ``causal=False``: every position attends to every other, so the hidden state
at ``t`` sees the left *and* the right context. That is why the objective changes: predicting
the next token would be trivial when the model can see it. Instead a random 15% of the
positions is *selected* and the model predicts the original token there (:func:`mask_tokens`):

    selected  S ⊂ {t : x_t not special},  P(t ∈ S) = p = 0.15
    input     x̃_t = [MASK]  w.p. 0.8,  a uniform random non-special token  w.p. 0.1,
              x_t (unchanged)  w.p. 0.1,          for t ∈ S;  x̃_t = x_t otherwise
    loss      L = −(1/|S|) Σ_{t∈S} log softmax(f(x̃)_t)[x_t]                 (labels −100 off S)

The 10% random / 10% unchanged keep the model from learning "only [MASK] positions matter":
the representation of *every* token must carry its identity, since any of them may be scored.

The head (BERT's): a transform ``h ↦ Norm(GELU(W h + b))`` then the decoder, whose matrix is the
token embedding (weight tying, as in GPT) plus an output bias: ``logits = transform(h) Eᵀ + b_V``.

**Sentence embedding** (:meth:`BERT.sentence_embedding`, what layer 7's retrieval uses): the mean
of the final hidden states over the real (non-padding) tokens,

    e = Σ_t m_t h_t / Σ_t m_t,     m_t = attention_mask[t] ∈ {0, 1}

with padding also hidden from attention (a key-padding mask), so ``e`` of a padded batch equals
``e`` of each sentence alone. It is a method of the model, so the model :func:`load_model`
rebuilds from a checkpoint has it.

:class:`MaskedLM` is the layer-3 :class:`~layer3_framework.task.Task`: it masks each training
batch with its own ``torch.Generator`` (checkpointed, so a resumed run masks as the unbroken one
would) and evaluates masked-token accuracy and the MLM loss over the selected positions, summed in
float64. Evaluation masks are a function of the batch's content (a seed hashed from the ids), so
every evaluation of a run scores the same positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework.task import Logs, Sums, Task
from layer4_architectures.sequence.gpt import GPT, GPTConfig, make_norm

IGNORE = -100  # label of the positions that are not scored
MASK_P, MASK_TO_MASK, MASK_TO_RANDOM = 0.15, 0.8, 0.1


def _allowed_ids(vocab_size: int, special_ids: Sequence[int], device: torch.device) -> torch.Tensor:
    """The non-special token ids (what a selected token may be replaced by)."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    special = torch.as_tensor(list(special_ids), dtype=torch.long)
    if special.numel() and (special.min() < 0 or special.max() >= vocab_size):
        raise ValueError(f"special_ids {list(special_ids)} must lie in [0, {vocab_size})")
    allowed[special] = False
    if not bool(allowed.any()):
        raise ValueError("every token id is special: nothing can be masked")
    return allowed.nonzero()[:, 0].to(device)


def mask_tokens(
    ids: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids: Sequence[int],
    p: float = MASK_P,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of ids (B, T): ``(inputs, labels)``, both (B, T).

    Each non-special position is selected with probability ``p``; a selected one becomes
    ``mask_id`` (80%), a uniform random non-special token (10%) or stays (10%). ``labels`` holds
    the original id at selected positions and -100 elsewhere. Draws come from ``generator``
    (on the CPU; the results are moved to ``ids``' device).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"mask probability p must be in (0, 1), got {p}")
    if not 0 <= mask_id < vocab_size:
        raise ValueError(f"mask_id={mask_id} is not a token id of a vocabulary of {vocab_size}")
    allowed = _allowed_ids(vocab_size, special_ids, torch.device("cpu"))
    cpu = ids.detach().cpu()
    is_special = ~torch.isin(cpu, allowed)  # (B, T)
    u_select, u_kind = torch.rand((2, *cpu.shape), generator=generator)  # (B, T) each
    selected = (u_select < p) & ~is_special
    to_mask = selected & (u_kind < MASK_TO_MASK)
    to_random = selected & (u_kind >= MASK_TO_MASK) & (u_kind < MASK_TO_MASK + MASK_TO_RANDOM)
    pick = torch.randint(0, allowed.numel(), cpu.shape, generator=generator)  # (B, T)
    inputs = torch.where(to_mask, torch.full_like(cpu, mask_id), cpu)
    inputs = torch.where(to_random, allowed[pick], inputs)
    labels = torch.where(selected, cpu, torch.full_like(cpu, IGNORE))
    return inputs.to(ids.device), labels.to(ids.device)


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the selected positions (labels != -100); 0 if there are none."""
    flat = logits.reshape(-1, logits.shape[-1]).float()  # (B·T, V)
    target = labels.reshape(-1)
    n = (target != IGNORE).sum()
    total = F.cross_entropy(flat, target, ignore_index=IGNORE, reduction="sum")
    return total / n.clamp(min=1)


class BERT(nn.Module):
    """The encoder: ``BERT(vocab_size, mask_id, pad_id, special_ids, **GPTConfig fields)``;
    forward(idx (B, T), attention_mask (B, T) or None) -> MLM logits (B, T, V)."""

    def __init__(
        self,
        vocab_size: int,
        mask_id: int,
        pad_id: int | None = None,
        special_ids: Sequence[int] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if kwargs.pop("causal", False):
            raise ValueError("BERT is bidirectional: causal must be False")
        if not 0 <= mask_id < vocab_size:
            raise ValueError(f"mask_id={mask_id} is not a token id of a vocabulary of {vocab_size}")
        if pad_id is not None and not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id={pad_id} is not a token id of a vocabulary of {vocab_size}")
        self.mask_id, self.pad_id = mask_id, pad_id
        specials = {mask_id, *special_ids} | ({pad_id} if pad_id is not None else set())
        self.special_ids = sorted(specials)
        # GPT's embeddings, positions, blocks (causal=False), final norm and tied unembedding
        self.encoder = GPT(vocab_size, causal=False, **kwargs)
        self.config: GPTConfig = self.encoder.config
        c = self.config.n_embd
        self.transform = nn.Sequential(nn.Linear(c, c), nn.GELU(), make_norm(self.config))
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.transform[0].weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.transform[0].bias)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def num_params(self) -> int:
        """Parameters, the tied embedding/decoder matrix counted once."""
        return sum(p.numel() for p in self.parameters())

    def _key_mask(self, idx: torch.Tensor, attention_mask: torch.Tensor | None) -> Any:
        """(B, T) 0/1 -> bool (B, 1, 1, T): which keys every query may attend to."""
        if attention_mask is None:
            return None
        if attention_mask.shape != idx.shape:
            raise ValueError(
                f"attention_mask must have the ids' shape {tuple(idx.shape)}, "
                f"got {tuple(attention_mask.shape)}"
            )
        keep = attention_mask.bool()
        empty = ~keep.any(dim=1)
        if bool(empty.any()):
            rows = empty.nonzero()[:, 0].tolist()
            raise ValueError(f"attention_mask rows {rows} mask every token: nothing to encode")
        return keep[:, None, None, :]

    def encode(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states (B, T, C) of ids (B, T); ``attention_mask`` 1 = real, 0 = padding."""
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"BERT expects ids (B, T) with T >= 1, got {tuple(idx.shape)}")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(
                f"sequence length {idx.shape[1]} exceeds block_size={self.config.block_size}"
            )
        mask = self._key_mask(idx, attention_mask)
        enc = self.encoder
        x = enc._embed(idx, 0)  # (B, T, C): tokens (+ positions)
        for block in enc.blocks:
            x = block(x, enc.rope, None, mask)  # bidirectional blocks
        return enc.norm_f(x)  # (B, T, C)

    def forward(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        h = self.transform(self.encode(idx, attention_mask))  # (B, T, C)
        return self.encoder.lm_head(h) + self.decoder_bias  # (B, T, V), tied to the embedding

    def sentence_embedding(
        self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, T) ids -> (B, C): the mean of the final hidden states over the real tokens."""
        h = self.encode(ids, attention_mask)  # (B, T, C)
        if attention_mask is None:
            return h.mean(dim=1)
        m = attention_mask.to(h.dtype)[..., None]  # (B, T, 1)
        return (h * m).sum(dim=1) / m.sum(dim=1)


def _ids_of(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The ids (and attention mask) of a batch: a tensor, ``(x, y)`` (the LM windows of the
    text data modules: x is used) or ``{"ids", "attention_mask"}``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, dict):
        return batch["ids"], batch.get("attention_mask")
    if isinstance(batch, (tuple, list)) and batch:
        return batch[0], None
    raise TypeError(f"MaskedLM cannot read ids from a batch of type {type(batch).__name__}")


def _content_seed(ids: torch.Tensor) -> int:
    """A seed that is a function of the ids (so evaluation masks the same positions each time)."""
    flat = ids.detach().cpu().reshape(-1).long()
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.long)
    return int(((flat + 1) * weights).sum()) % (2**62)


class MaskedLM(Task):
    """MLM pre-training of a :class:`BERT` (the layer-3 task protocol): mask, predict, score."""

    model_key = "model"

    def __init__(self, model: BERT, p: float = MASK_P, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 < p < 1.0:
            raise ValueError(f"mask probability p must be in (0, 1), got {p}")
        self.model, self.p = model, p
        self.generator = torch.Generator().manual_seed(seed)

    def corrupt(
        self, ids: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of :func:`mask_tokens` with the model's special ids."""
        m = self.model
        return mask_tokens(
            ids, mask_id=m.mask_id, vocab_size=m.vocab_size, special_ids=m.special_ids,
            p=self.p, generator=self.generator if generator is None else generator,
        )  # fmt: skip

    def eval_corrupt(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The evaluation masks of ``ids``: a function of the ids alone (the same every time)."""
        return self.corrupt(ids, torch.Generator().manual_seed(_content_seed(ids)))

    def training_step(self, batch: Any, step: int, optimizer: str = "main") -> tuple[Any, Logs]:
        ids, attention_mask = _ids_of(batch)
        inputs, labels = self.corrupt(ids)
        loss = mlm_loss(self.model(inputs, attention_mask), labels)
        return loss, {}

    def validation_step(self, batch: Any) -> Sums:
        ids, attention_mask = _ids_of(batch)
        inputs, labels = self.eval_corrupt(ids)
        out = self.model(inputs, attention_mask)
        with torch.autocast(out.device.type, enabled=False):
            logits = out.reshape(-1, out.shape[-1]).float()  # (B·T, V)
            target = labels.reshape(-1)
            scored = target != IGNORE
            loss_sum = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
            correct = ((logits.argmax(-1) == target) & scored).sum()
        n = scored.sum()
        return {"loss": (loss_sum.double(), n), "accuracy": (correct.double(), n)}

    def get_extra_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
