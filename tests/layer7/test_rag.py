"""RAG pieces (layer7_research.retrieval.rag, .questions): recall@k and reciprocal-rank fusion
against hand-worked examples, prompt truncation, greedy answers against a hand-rolled argmax
loop, and the cloze question set's construction."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from layer4_architectures.sequence.gpt import GPT
from layer7_research.retrieval import questions as qs
from layer7_research.retrieval.rag import (
    answer,
    answer_logprob,
    greedy_word,
    is_correct,
    prompt_ids,
    recall_at_k,
    reciprocal_rank_fusion,
)


def test_recall_at_k_hand_example():
    ranked = np.array([[3, 1, 2], [0, 2, 1], [2, 0, 1], [1, 0, 3]])
    gold = np.array([1, 0, 1, 2])  # found at ranks 2, 1, 3 and never
    assert recall_at_k(ranked, gold, [1, 2, 3]) == {1: 0.25, 2: 0.5, 3: 0.75}
    with pytest.raises(ValueError, match="must lie in 1..3"):
        recall_at_k(ranked, gold, [4])


def test_reciprocal_rank_fusion_hand_example():
    # ranking A: 1, 2, 3; ranking B: 3, 1, 4 (c = 60)
    #   RRF(1) = 1/61 + 1/62 = 0.032522, RRF(3) = 1/63 + 1/61 = 0.032266,
    #   RRF(2) = 1/62 = 0.016129, RRF(4) = 1/63 = 0.015873  ->  1, 3, 2, 4
    fused = reciprocal_rank_fusion([np.array([[1, 2, 3]]), np.array([[3, 1, 4]])], k=4)
    assert fused.tolist() == [[1, 3, 2, 4]]
    # a tie (same ranks, swapped) goes to the lower id
    assert reciprocal_rank_fusion([np.array([[7, 5]]), np.array([[5, 7]])], k=2).tolist() == [
        [5, 7]
    ]
    with pytest.raises(ValueError, match="fewer than k=5"):
        reciprocal_rank_fusion([np.array([[1, 2]])], k=5)


class _WordTok:
    """Stand-in tokenizer: one id per character (byte value), decode inverts it."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids, errors: str = "strict") -> str:
        return bytes(ids).decode(errors=errors)


def test_prompt_keeps_the_question_and_the_passage_end():
    tok = _WordTok()
    ids = prompt_ids(tok, "0123456789", "Q is", block_size=12, room=3)
    # budget for the passage: 12 − 3 − len(" Q is") = 4 -> its last 4 characters
    assert tok.decode(ids) == "6789 Q is"
    assert tok.decode(prompt_ids(tok, "ab", "Q", block_size=50, room=3)) == "ab Q"
    assert tok.decode(prompt_ids(tok, None, "Q is", block_size=12, room=3)) == "Q is"
    with pytest.raises(ValueError, match="no room for 3 answer tokens"):
        prompt_ids(tok, None, "a long question", block_size=10, room=3)


def test_greedy_word_is_the_argmax_continuation():
    torch.manual_seed(0)
    gpt = GPT(256, block_size=32, n_layer=1, n_head=2, n_embd=16).eval()
    tok, ids = _WordTok(), list(b"the cat")
    x = torch.tensor([ids])
    with torch.no_grad():  # the hand-rolled greedy loop, no cache
        for _ in range(5):
            x = torch.cat([x, gpt(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
    text = bytes(x[0, len(ids) :].tolist()).decode(errors="replace")
    m = re.match(r"^\s*([A-Za-z]+)", text)
    assert greedy_word(gpt, tok, ids, 5) == (m.group(1) if m else "")


def test_answer_logprob_is_the_chain_rule_sum_over_the_answer_tokens():
    torch.manual_seed(1)
    gpt = GPT(256, block_size=40, n_layer=1, n_head=2, n_embd=16).eval()
    tok = _WordTok()
    total, first_rank = answer_logprob(gpt, tok, "Sam has a hat.", "Sam put on his", "hat")
    # step by step: log p(next char | everything before), one forward per answer character
    ids, want = list(b"Sam has a hat. Sam put on his"), 0.0
    with torch.no_grad():
        for k, t in enumerate(b" hat"):
            logp = torch.log_softmax(gpt(torch.tensor([ids]))[0, -1].double(), dim=-1)
            want += float(logp[t])
            if k == 0:
                want_rank = int((logp > logp[t]).sum())
            ids.append(t)
    assert total == pytest.approx(want, abs=1e-4)
    assert first_rank == want_rank


class _Scripted(torch.nn.Module):
    """A 'model' whose continuation is fixed: checks the word parsing and the prompt it gets."""

    def __init__(self, continuation: str) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"block_size": 64})()
        self.continuation, self.prompts = continuation, []

    def generate(self, x, n, temperature):
        assert temperature == 0.0
        self.prompts.append(bytes(x[0].tolist()).decode())
        new = torch.tensor([list(self.continuation.encode())[:n]])
        return torch.cat([x, new], dim=1)


@pytest.mark.parametrize(("cont", "word"), [(" Lily went", "Lily"), (" Max.", "Max"), ("...", "")])
def test_answer_parses_the_first_word(cont, word):
    model = _Scripted(cont)
    assert answer(model, _WordTok(), "Lily had a dog.", "Then", max_new_tokens=6) == word
    assert model.prompts == ["Lily had a dog. Then"]


def test_is_correct_ignores_case_only():
    assert is_correct("island", "Island") and not is_correct("islands", "island")


STORIES = "\n\n".join(
    [
        "Tom had a red kite. Tom and his sister Mia flew the kite in the park. "
        "The kite went very high.",
        "Ben found a tiny turtle. He named the turtle Shelly and gave Shelly some lettuce. "
        "The turtle was happy.",
        "Anna baked a cake. The cake was big and sweet. Anna gave the cake to her friends.",
    ]
)


def test_questions_blank_a_word_found_elsewhere_in_the_gold_passage():
    questions, corpus = qs.build_questions(STORIES, n=10, seed=0, max_df=1, min_prefix_words=2)
    original = qs.passages(STORIES)
    assert len(corpus) == len(original) == 3 and questions
    for q in questions:
        sentence = f"{q.prefix} {q.answer}{q.suffix}"
        assert sentence in qs.sentences(original[q.gold])  # the blank restores the sentence
        assert sentence not in corpus[q.gold]  # ...which is gone from the corpus
        assert re.search(rf"\b{q.answer}\b", corpus[q.gold])  # the answer is still there
        assert len(q.prefix.split()) >= 2
    again, _ = qs.build_questions(STORIES, n=10, seed=0, max_df=1, min_prefix_words=2)
    assert again == questions


def test_plain_cloze_keeps_the_corpus_and_blanks_the_same_words():
    removed, _ = qs.build_questions(STORIES, n=10, seed=0, max_df=1, min_prefix_words=2)
    kept, corpus = qs.build_questions(
        STORIES, n=10, seed=0, max_df=1, min_prefix_words=2, remove_sentence=False
    )
    assert corpus == qs.passages(STORIES)
    assert [(q.prefix, q.answer, q.suffix, q.gold) for q in kept] == [
        (q.prefix, q.answer, q.suffix, q.gold) for q in removed
    ]
    assert all(f"{q.prefix} {q.answer}{q.suffix}" in corpus[q.gold] for q in kept)


def test_questions_answer_df_counts_corpus_passages():
    questions, corpus = qs.build_questions(STORIES, n=10, seed=1, max_df=3, min_prefix_words=1)
    for q in questions:
        want = sum(
            bool(re.search(rf"(?<![\w']){q.answer.lower()}(?![\w'])", p.lower())) for p in corpus
        )
        assert q.answer_df == want


def test_questions_reject_bad_arguments():
    with pytest.raises(ValueError, match="max_df=0"):
        qs.build_questions(STORIES, n=5, max_df=0)


@pytest.mark.data
def test_questions_on_the_tinystories_sample():
    from layer0_math.datasets import load_tinystories

    questions, corpus = qs.build_questions(load_tinystories(), n=600, seed=0, max_df=5)
    assert len(questions) > 300 and len(corpus) > 3000
    assert len({q.gold for q in questions}) == len(questions)  # one question per passage
    assert all(1 <= q.answer_df <= 5 for q in questions)
