"""Preference data from our own model: two sampled continuations of each prompt, judged by a rule.

RLHF and DPO learn from comparisons ``(x, y_w, y_l)``: for prompt ``x`` the continuation ``y_w``
is preferred to ``y_l``. Here the judge is a stated, checkable rule instead of a person, so every
win-rate later is exact ground truth rather than another model's opinion:

    positivity(y) = #{words of y in POSITIVE} − #{words of y in NEGATIVE}

over lower-cased words (``[a-z']+``) of the decoded continuation only (the prompt is shared, so it
cannot decide). The lexicons are emotion words TinyStories itself uses (happy, smiled, laughed,
loved, fun, … against sad, cried, angry, scared, …). Every continuation has the same number of
tokens, so a raw count needs no length normalisation. ``y_w`` is the one with the higher score;
a tie carries no preference and is dropped.

The pipeline (:func:`make_pairs`), deterministic given the seed:

1. prompts: the first ``P`` tokens after each sentence start of a held-out text
   (:func:`prompts_from_text`; layer 4's GPT never trained on its validation split);
2. two continuations per prompt, sampled from the model at temperature 1 with its KV cache
   (``GPT.generate``, one seeded generator per batch), ``C`` tokens each;
3. both scored by the rule; ties dropped; (prompt + y_w, prompt + y_l) stored as (N, P + C) ids.

The same rule judges policies: :func:`win_rate` is P(score(a) > score(b)) + ½ P(tie) over
paired samples of two policies on the same prompts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from layer7_research.alignment.logprobs import sequence_kl

POSITIVE = frozenset(
    "happy happily happier happiest happiness smile smiled smiles smiling laugh laughed laughs "
    "laughing love loved loves loving lovely fun kind nice glad joy joyful proud excited hug "
    "hugged hugs cheer cheered cheerful great wonderful beautiful enjoy enjoyed thank thanked "
    "thankful yay giggle giggled".split()
)
NEGATIVE = frozenset(
    "sad sadly sadness cry cried cries crying tears angry angrily mad scared afraid frightened "
    "fear hurt hurts pain bad upset lonely sorry scary worried worry naughty bored grumpy sick "
    "broken frown frowned".split()
)
_WORD = re.compile(r"[a-z']+")
_SENTENCE_END = re.compile(r"(?:[.!?][\"']?\s+|\n\s*)")

Rule = Callable[[str], float]


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (runs of letters and apostrophes)."""
    return _WORD.findall(text.lower())


def positivity(text: str) -> float:
    """The rule: count of POSITIVE words minus count of NEGATIVE words in ``text``."""
    ws = words(text)
    return float(sum(w in POSITIVE for w in ws) - sum(w in NEGATIVE for w in ws))


def win_rate(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """P(a > b) + ½ P(a = b) over paired scores (a tie counts half a win)."""
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"win_rate needs two non-empty (N,) arrays, got {a.shape} and {b.shape}")
    return float(np.mean((a > b) + 0.5 * (a == b)))


def sentence_starts(text: str) -> list[int]:
    """Character offsets where a sentence begins: 0 and after . ! ? (+ quote) or a newline."""
    starts = [0] + [m.end() for m in _SENTENCE_END.finditer(text)]
    return sorted({s for s in starts if s < len(text) and not text[s].isspace()})


def prompts_from_text(text: str, tokenizer, prompt_tokens: int, max_prompts: int) -> torch.Tensor:
    """The first ``prompt_tokens`` BPE ids after each sentence start of ``text``, in text
    order, at most ``max_prompts`` of them -> (N, P) int64."""
    if prompt_tokens < 1 or max_prompts < 1:
        raise ValueError(
            f"prompt_tokens and max_prompts must be >= 1, got {prompt_tokens}, {max_prompts}"
        )
    rows = []
    for s in sentence_starts(text):
        ids = tokenizer.encode(text[s : s + 12 * prompt_tokens])  # 12 chars/token: enough
        if len(ids) >= prompt_tokens:
            rows.append(ids[:prompt_tokens])
        if len(rows) == max_prompts:
            break
    if not rows:
        raise ValueError(f"no sentence of the text is {prompt_tokens} tokens long")
    return torch.tensor(rows, dtype=torch.long)


def split_prompts(prompts: torch.Tensor, held_out: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``1 - held_out`` of the prompts (text order) for training, the rest held out,
    so that training and held-out prompts come from different parts of the text."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")
    cut = round(len(prompts) * (1.0 - held_out))
    if cut == 0 or cut == len(prompts):
        raise ValueError(f"{len(prompts)} prompts cannot be split {1 - held_out:.2f}/{held_out}")
    return prompts[:cut], prompts[cut:]


@torch.no_grad()
def sample_continuations(
    model: torch.nn.Module,
    prompts: torch.Tensor,
    n_tokens: int,
    *,
    seed: int,
    batch_size: int = 256,
    temperature: float = 1.0,
) -> torch.Tensor:
    """One continuation of ``n_tokens`` per prompt row, sampled with the KV cache; batch ``i``
    draws from its own generator seeded ``seed + i`` -> (N, P + n_tokens)."""
    device = next(model.parameters()).device
    out = []
    for i, start in enumerate(range(0, len(prompts), batch_size)):
        batch = prompts[start : start + batch_size].to(device)  # (b, P)
        out.append(model.generate(batch, n_tokens, temperature=temperature, seed=seed + i).cpu())
    return torch.cat(out)  # (N, P + C)


def score_continuations(ids: torch.Tensor, prompt_len: int, tokenizer, rule: Rule) -> np.ndarray:
    """The rule's score of each row's continuation ids[:, prompt_len:] (decoded) -> (N,)."""
    texts = [tokenizer.decode(row[prompt_len:].tolist(), errors="replace") for row in ids]
    return np.array([rule(t) for t in texts], dtype=np.float64)


@dataclass
class PreferencePairs:
    """N preference pairs over shared prompts of ``prompt_len`` tokens: ``chosen`` and
    ``rejected`` are (N, P + C) ids (prompt + continuation), with the rule's scores (N,)."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    chosen_score: np.ndarray
    rejected_score: np.ndarray
    prompt_len: int
    n_prompts: int
    n_ties: int

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def prompts(self) -> torch.Tensor:
        return self.chosen[:, : self.prompt_len]


def make_pairs(
    model: torch.nn.Module,
    tokenizer,
    prompts: torch.Tensor,
    n_tokens: int,
    *,
    seed: int,
    rule: Rule = positivity,
    batch_size: int = 256,
) -> PreferencePairs:
    """Two continuations per prompt, scored by ``rule``; ties dropped; the higher one chosen."""
    p = prompts.shape[1]
    first = sample_continuations(model, prompts, n_tokens, seed=seed, batch_size=batch_size)
    second = sample_continuations(
        model, prompts, n_tokens, seed=seed + 100_003, batch_size=batch_size
    )  # a second stream of seeds, disjoint from the first for any realistic number of batches
    s1 = score_continuations(first, p, tokenizer, rule)
    s2 = score_continuations(second, p, tokenizer, rule)
    keep = s1 != s2
    if not keep.any():
        raise ValueError(
            f"all {len(prompts)} pairs tie under the rule {getattr(rule, '__name__', rule)}: "
            "no preference to learn (more prompts or longer continuations?)"
        )
    first_wins = torch.from_numpy(s1 > s2)[:, None]  # (N, 1)
    chosen = torch.where(first_wins, first, second)[torch.from_numpy(keep)]
    rejected = torch.where(first_wins, second, first)[torch.from_numpy(keep)]
    return PreferencePairs(
        chosen=chosen,
        rejected=rejected,
        chosen_score=np.maximum(s1, s2)[keep],
        rejected_score=np.minimum(s1, s2)[keep],
        prompt_len=p,
        n_prompts=len(prompts),
        n_ties=int((~keep).sum()),
    )


class Judge:
    """The rule as the yardstick of a policy on held-out prompts (N, P).

    Reference samples are drawn once (seed ``seed``); each call samples the policy (seed
    ``seed + 1``, so the two draws are independent) and returns the rule's win-rate of policy
    over reference samples prompt by prompt (ties ½), the mean rule score, and KL(π ‖ π_ref) of
    whole continuations estimated on the policy's samples (the exact per-token KL summed,
    :func:`~layer7_research.alignment.logprobs.sequence_kl`).
    """

    def __init__(
        self,
        reference: torch.nn.Module,
        tokenizer,
        prompts: torch.Tensor,
        n_tokens: int,
        *,
        seed: int,
        rule: Rule = positivity,
    ) -> None:
        self.reference, self.tokenizer, self.prompts = reference, tokenizer, prompts
        self.n_tokens, self.seed, self.rule = n_tokens, seed, rule
        self.reference_ids = sample_continuations(reference, prompts, n_tokens, seed=seed)
        self.reference_scores = self.scores(self.reference_ids)

    @property
    def fingerprint(self) -> str:
        """A hash of the judge's prompts and continuation length: two runs compare only when
        they were judged on the same ones."""
        data = self.prompts.numpy().astype(np.int64).tobytes() + str(self.n_tokens).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def scores(self, ids: torch.Tensor) -> np.ndarray:
        return score_continuations(ids, self.prompts.shape[1], self.tokenizer, self.rule)

    def texts(self, ids: torch.Tensor, n: int) -> list[str]:
        """The first n rows of ids decoded as 'prompt ⟶ continuation'."""
        p = self.prompts.shape[1]
        dec = self.tokenizer.decode
        return [
            f"{dec(r[:p].tolist(), errors='replace')} ⟶ {dec(r[p:].tolist(), errors='replace')}"
            for r in ids[:n]
        ]

    @torch.no_grad()
    def __call__(self, policy: torch.nn.Module, batch_size: int = 128) -> dict:
        ids = sample_continuations(policy, self.prompts, self.n_tokens, seed=self.seed + 1)
        scores = self.scores(ids)
        device = next(policy.parameters()).device
        kl = torch.cat([
            sequence_kl(policy, self.reference, ids[i : i + batch_size].to(device),
                        self.prompts.shape[1]).cpu()
            for i in range(0, len(ids), batch_size)
        ])  # fmt: skip
        return {
            "win_rate": win_rate(scores, self.reference_scores),
            "rule_score": float(scores.mean()),
            "kl": float(kl.mean()),
            "ids": ids,
        }


@dataclass
class PreferenceData:
    """Training and held-out pairs from disjoint prompts, and the held-out prompts themselves
    (ties included: a judge's prompts need no preference)."""

    train: PreferencePairs
    held_out: PreferencePairs
    held_out_prompts: torch.Tensor


def preference_data(
    model: torch.nn.Module,
    tokenizer,
    text: str,
    *,
    prompt_tokens: int,
    continuation_tokens: int,
    max_prompts: int,
    held_out: float,
    seed: int,
) -> PreferenceData:
    """Prompts from ``text`` split in text order, then pairs for each side (seeds ``seed``,
    ``seed + 1``): the one recipe both alignment deliverables use, so they see the same pairs."""
    prompts = prompts_from_text(text, tokenizer, prompt_tokens, max_prompts)
    train_prompts, test_prompts = split_prompts(prompts, held_out)
    return PreferenceData(
        train=make_pairs(model, tokenizer, train_prompts, continuation_tokens, seed=seed),
        held_out=make_pairs(model, tokenizer, test_prompts, continuation_tokens, seed=seed + 1),
        held_out_prompts=test_prompts,
    )
