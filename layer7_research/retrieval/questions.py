"""A cloze question set over the TinyStories sample, each question with its gold passage.

The shared sample is one stream of stories separated by blank lines (``"\\n\\n"``); stories
have blank lines of their own, so a *passage* here is one blank-line-separated chunk (a story or
one of its paragraphs; /work/shared/data/README). A question is built from a passage ``p``:

1. pick a sentence ``s`` of ``p`` and a word ``w`` of ``s`` that is *rare* (in at most
   ``max_df`` passages of the corpus, counted with BM25's tokeniser, so mostly names and
   content words), has 3+ letters, at least ``min_prefix_words`` words before it in ``s``, and
   occurs again in ``p`` outside ``s``;
2. the question is ``s`` with ``w`` blanked (``prefix ___ suffix``), the answer is ``w``;
3. with ``remove_sentence=False`` (the plain cloze) the corpus holds ``p`` as it is: retrieval
   can match the question's sentence itself, and the generator can copy the word that followed
   the same words in its context (an induction head's job). With ``remove_sentence=True`` (the
   harder variant) ``s`` is removed from ``p`` in the corpus, so the gold passage holds the answer
   (elsewhere in its text) but not the sentence: retrieval has to match the story, not the
   sentence, and the generator has to find the word, not copy the next token.

One question per passage at most; the choice is a function of ``seed`` (deterministic). The gold
passage is known by construction; ``answer_df`` (how many corpus passages contain the answer)
says how ambiguous the answer is (``max_df = 1``: the answer occurs in exactly one passage).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from layer7_research.retrieval.bm25 import tokenize

SENTENCE_END = re.compile(r'(?<=[.!?])\s+|(?<=[.!?]")\s+')
WORD = re.compile(r"(?<![\w'])[A-Za-z]+(?![\w'])")  # whole words: not "don" of "don't"


@dataclass(frozen=True)
class Question:
    """``prefix ___ suffix``; ``answer`` fills the blank; ``gold`` indexes the corpus."""

    prefix: str
    answer: str
    suffix: str
    gold: int
    answer_df: int

    @property
    def text(self) -> str:
        """The question as a retrieval query: the sentence with the blank left out."""
        return f"{self.prefix} {self.suffix}".strip()

    @property
    def masked(self) -> str:
        """The sentence with the blank as ``[MASK]`` (how BERT reads a missing word)."""
        return f"{self.prefix} [MASK]{self.suffix}"


def passages(text: str, min_sentences: int = 2) -> list[str]:
    """The blank-line-separated chunks of ``text`` with ``min_sentences``+ sentences, unique, in
    order."""
    out, seen = [], set()
    for chunk in text.split("\n\n"):
        chunk = " ".join(chunk.split())
        if chunk and chunk not in seen and len(sentences(chunk)) >= min_sentences:
            seen.add(chunk)
            out.append(chunk)
    return out


def sentences(passage: str) -> list[str]:
    return [s for s in SENTENCE_END.split(passage) if s.strip()]


def _candidates(
    sents: list[str], df: Counter, max_df: int, min_prefix_words: int
) -> list[tuple[int, re.Match]]:
    """(sentence index, word match) pairs that may be blanked (step 1 of the module docstring)."""
    out = []
    for i, s in enumerate(sents):
        rest = " ".join(sents[:i] + sents[i + 1 :])
        for j, m in enumerate(WORD.finditer(s)):
            w = m.group()
            if (
                len(w) >= 3
                and j >= min_prefix_words
                and df[w.lower()] <= max_df
                and re.search(rf"(?<![\w']){w}(?![\w'])", rest)
            ):
                out.append((i, m))
    return out


def build_questions(
    text: str,
    n: int,
    seed: int = 0,
    max_df: int = 3,
    min_prefix_words: int = 3,
    remove_sentence: bool = True,
) -> tuple[list[Question], list[str]]:
    """Up to ``n`` questions and the retrieval corpus (every passage; with ``remove_sentence`` a
    question's passage without its sentence). Deterministic in ``seed``; which words are blanked
    does not depend on ``remove_sentence`` (only ``answer_df`` may)."""
    if n < 1 or max_df < 1 or min_prefix_words < 0:
        raise ValueError(
            f"build_questions needs n >= 1, max_df >= 1, min_prefix_words >= 0; "
            f"got {n=}, {max_df=}, {min_prefix_words=}"
        )
    corpus = passages(text)
    df = Counter(t for p in corpus for t in set(tokenize(p)))
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, str, re.Match]] = []
    for pid in rng.permutation(len(corpus)):
        sents = sentences(corpus[pid])
        cands = _candidates(sents, df, max_df, min_prefix_words)
        if cands:
            i, m = cands[int(rng.integers(len(cands)))]
            chosen.append((int(pid), sents[i], m))
            if remove_sentence:
                corpus[pid] = " ".join(sents[:i] + sents[i + 1 :])
        if len(chosen) == n:
            break
    final_df = Counter(t for p in corpus for t in set(tokenize(p)))
    return [_question(pid, s, m, final_df) for pid, s, m in chosen], corpus


def _question(pid: int, sentence: str, m: re.Match, df: Counter) -> Question:
    prefix, suffix = sentence[: m.start()].rstrip(), sentence[m.end() :]
    return Question(prefix, m.group(), suffix, pid, df[m.group().lower()])
