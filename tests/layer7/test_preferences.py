"""The preference rule, prompts, pairs and the judge, checked by hand-computed cases and by
recomputing what the pipeline claims (scores, shared prompts, determinism) independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer4_architectures.sequence.data import CharTokenizer
from layer4_architectures.sequence.gpt import GPT
from layer7_research.alignment import (
    Judge,
    frozen,
    make_pairs,
    positivity,
    prompts_from_text,
    split_prompts,
    win_rate,
)
from layer7_research.alignment.preferences import sentence_starts

TEXT = "the cat sat. a dog ran! was it fun? yes\nno way. "
TOK = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz .!?\n")


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_gpt(vocab: int, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return frozen(GPT(vocab_size=vocab, block_size=32, n_layer=1, n_head=2, n_embd=16))


def count_a(text: str) -> float:
    return float(text.count("a"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She was happy and smiled, but then she cried.", 2 - 1),
        ("HAPPY! Happy? happy-go-lucky", 3),  # case and punctuation do not matter
        ("unhappy sadder", 0),  # whole words only: neither is in a lexicon
        ("They were sad, scared and angry.", -3),
        ("", 0),
    ],
)
def test_positivity_counts_lexicon_words(text, expected):
    assert positivity(text) == expected


def test_win_rate_counts_ties_half():
    assert win_rate(np.array([1, 0, 2, 5]), np.array([0, 0, 3, 1])) == pytest.approx(2.5 / 4)
    with pytest.raises(ValueError, match="non-empty"):
        win_rate(np.array([1, 2]), np.array([1]))


def test_sentence_starts_and_prompts():
    starts = sentence_starts(TEXT)
    assert [TEXT[s : s + 3] for s in starts] == ["the", "a d", "was", "yes", "no "]
    prompts = prompts_from_text(TEXT, TOK, 3, 10)
    assert [TOK.decode(r.tolist()) for r in prompts] == ["the", "a d", "was", "yes", "no "]
    assert len(prompts_from_text(TEXT, TOK, 3, 2)) == 2
    with pytest.raises(ValueError, match="tokens long"):
        prompts_from_text(TEXT, TOK, 60, 10)


def test_split_prompts_keeps_text_order():
    prompts = torch.arange(20).reshape(10, 2)
    train, test = split_prompts(prompts, 0.3)
    assert torch.equal(torch.cat([train, test]), prompts) and len(test) == 3
    with pytest.raises(ValueError, match="held_out"):
        split_prompts(prompts, 1.0)


def test_make_pairs_labels_by_the_rule_and_is_deterministic():
    model = tiny_gpt(TOK.vocab_size)
    prompts = torch.randint(0, TOK.vocab_size, (40, 4), generator=torch.Generator().manual_seed(1))
    pairs = make_pairs(model, TOK, prompts, 12, seed=3, rule=count_a, batch_size=16)
    again = make_pairs(model, TOK, prompts, 12, seed=3, rule=count_a, batch_size=16)
    other = make_pairs(model, TOK, prompts, 12, seed=4, rule=count_a, batch_size=16)
    assert torch.equal(pairs.chosen, again.chosen) and torch.equal(pairs.rejected, again.rejected)
    assert not torch.equal(pairs.chosen, other.chosen[: len(pairs)])
    assert len(pairs) + pairs.n_ties == 40 and 0 < len(pairs) < 40
    assert pairs.chosen.shape == (len(pairs), 16)
    # the rule recomputed on the decoded continuations: chosen strictly better, scores as stored
    rescored_w = [count_a(TOK.decode(r[4:].tolist())) for r in pairs.chosen]
    rescored_l = [count_a(TOK.decode(r[4:].tolist())) for r in pairs.rejected]
    assert rescored_w == pairs.chosen_score.tolist() and rescored_l == pairs.rejected_score.tolist()
    assert (pairs.chosen_score > pairs.rejected_score).all()
    # both sides continue the same prompt, and the kept prompts are a subsequence of the given
    assert torch.equal(pairs.chosen[:, :4], pairs.rejected[:, :4])
    rows = [
        next(i for i, p in enumerate(prompts.tolist()) if p == q) for q in pairs.prompts.tolist()
    ]
    assert rows == sorted(rows)


def test_judge_of_the_reference_itself():
    ref = tiny_gpt(TOK.vocab_size)
    prompts = torch.randint(0, TOK.vocab_size, (64, 4), generator=torch.Generator().manual_seed(2))
    judge = Judge(ref, TOK, prompts, 10, seed=5, rule=count_a)
    out = judge(ref)
    assert out["kl"] == pytest.approx(0.0, abs=1e-6)  # π = π_ref: no divergence on any sample
    assert out["ids"].shape == (64, 14)
    expected = win_rate(judge.scores(out["ids"]), judge.reference_scores)
    assert out["win_rate"] == expected and 0.3 < out["win_rate"] < 0.7
    other = judge(tiny_gpt(TOK.vocab_size, seed=9))
    assert other["kl"] > 0.01
