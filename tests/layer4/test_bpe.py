"""The byte-level BPE tokenizer against independent references.

- round trip ``decode(encode(s)) == s`` on arbitrary Unicode (hypothesis) and named hard cases;
- the trainer's merges equal a naive trainer written here (recount every pair every merge) and
  HF ``tokenizers``' ``BpeTrainer``;
- the encoder, given HF's merges, gives HF's ids; given GPT-2's files, gives the ids of HF
  ``tokenizers`` and of ``tiktoken`` built from the same files, on real text;
- files, dicts and bad input: every error names the value.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given
from hypothesis import strategies as st

from layer4_architectures.sequence.bpe import EOT, BPETokenizer, TokenizerError, train_val_split

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

SMALL_CORPORA = {
    "ties": "ab ab ba ba cd cd dc dc aaaa bbbb " * 3,
    "runs": "aaaaaaa aaa a aa bbbbbb abababab aaaaaaa",
    "unicode": "naïve café — 東京 東京都 😀😀 e\u0301e\u0301 ça va? ÇA VA! l'été, l'hiver\n\n  x",
    "random": " ".join(
        "".join(random.Random(k).choices("abc", k=random.Random(k + 1).randint(1, 7)))
        for k in range(300)
    ),
}


def _gpt2_files(name: str) -> Path:
    for folder in os.environ.get("DLSTACK_DATA", "").split(":"):
        if folder and (Path(folder) / "gpt2" / name).exists():
            return Path(folder) / "gpt2" / name
    why = f"GPT-2's {name} not found under DLSTACK_DATA"
    if os.environ.get("DLSTACK_REQUIRE_DATA") == "1":
        pytest.fail(why + " (DLSTACK_REQUIRE_DATA=1)")
    pytest.skip(why)


@functools.cache
def _load_gpt2() -> BPETokenizer:
    return BPETokenizer.from_gpt2_files(_gpt2_files("vocab.json"), _gpt2_files("merges.txt"))


# ----------------------------------------------------------------------------------------------
# independent references, written here
# ----------------------------------------------------------------------------------------------


def printable_byte_order() -> list[int]:
    """GPT-2 encoder.py's bytes_to_unicode, as the code point of each byte's stand-in."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [c for _, c in sorted(zip(bs, cs, strict=True))]


def naive_train(
    text: str, n_merges_max: int, specials: tuple[str, ...]
) -> list[tuple[bytes, bytes]]:
    """Obviously correct BPE: recount all pairs each merge, best = (max count, HF id order)."""
    chunks = regex.split("|".join(regex.escape(s) for s in specials), text) if specials else [text]
    words = Counter(w for c in chunks for w in regex.findall(GPT2_REGEX, c))
    seqs = {w: [bytes([b]) for b in w.encode()] for w in words}
    order = printable_byte_order()
    rank = {bytes([b]): order[b] for b in range(256)}  # HF ids: bytes by stand-in code point
    merges = []
    for _ in range(n_merges_max):
        pairs: Counter = Counter()
        for w, seq in seqs.items():
            for a, b in zip(seq, seq[1:], strict=False):
                pairs[a, b] += words[w]
        if not pairs:
            break
        a, b = min(pairs, key=lambda p: (-pairs[p], rank[p[0]], rank[p[1]]))
        rank.setdefault(a + b, 1000 + len(rank))
        merges.append((a, b))
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and seq[i] == a and seq[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


def byte_merges(tok: BPETokenizer) -> list[tuple[bytes, bytes]]:
    return [(tok.token_bytes(a), tok.token_bytes(b)) for a, b, _ in tok.merges]


def hf_train(text: str, vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer)
    return tok


def hf_from_files(vocab: Path, merges: Path):
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.add_special_tokens([AddedToken(EOT, special=True, normalized=False)])
    return tok


@pytest.fixture(scope="module")
def small_tok() -> BPETokenizer:
    text = " ".join(SMALL_CORPORA.values()) + EOT + "the end. 12345 <|endoftext|>"
    return BPETokenizer.train(text * 2, 400)


# ----------------------------------------------------------------------------------------------
# round trip
# ----------------------------------------------------------------------------------------------

NAMED = {
    "empty": "",
    "emoji": "🙂👍🏽👨‍👩‍👧 🇫🇷",
    "combining": "e\u0301 a\u0308\u0323 Z\u0335\u0337",
    "cjk": "東京は日本の首都です。中文 한국어",
    "whitespace only": " \t \n\n   ",
    "crlf": "a\r\nb\r\n\r\n",
    "special embedded": f"once upon{EOT}a time {EOT}{EOT} end",
    "nul and controls": "\x00\x01\x7f\x1b[0m",
}


@pytest.mark.parametrize("name", list(NAMED))
def test_round_trip_named_cases(small_tok, name):
    s = NAMED[name]
    assert small_tok.decode(small_tok.encode(s)) == s
    assert small_tok.decode_bytes(small_tok.encode(s)) == s.encode()


@given(st.text())
def test_round_trip_arbitrary_unicode(small_tok, s):
    assert small_tok.decode(small_tok.encode(s)) == s


def test_special_tokens_are_whole_ids_never_merged(small_tok):
    ids = small_tok.encode(f"a{EOT}b")
    assert ids.count(small_tok.eot_id) == 1 and small_tok.eot_id == small_tok.vocab_size - 1
    assert small_tok.eot_id not in small_tok.encode("<|endoftext|"), "a partial special is text"
    assert all(small_tok.eot_id not in m for m in small_tok.merges)


def test_special_token_modes(small_tok):
    text = f"x{EOT}y"
    as_text = small_tok.encode(text, allowed_special="none")
    assert small_tok.eot_id not in as_text and small_tok.decode(as_text) == text
    assert small_tok.encode(text, allowed_special={EOT}) == small_tok.encode(text)
    with pytest.raises(TokenizerError, match=r"<\|endoftext\|>"):
        small_tok.encode(text, allowed_special="none_raise")
    with pytest.raises(TokenizerError, match=r"<\|endoftext\|>"):
        small_tok.encode(text, allowed_special=set())
    with pytest.raises(TokenizerError, match="<|pad|>"):
        small_tok.encode(text, allowed_special={"<|pad|>"})
    with pytest.raises(TokenizerError, match="'some'"):
        small_tok.encode(text, allowed_special="some")


# ----------------------------------------------------------------------------------------------
# training against references
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SMALL_CORPORA))
def test_merges_equal_the_naive_trainer(name):
    text = SMALL_CORPORA[name] + EOT + SMALL_CORPORA[name][::-1]
    tok = BPETokenizer.train(text, 256 + 60 + 1)
    assert byte_merges(tok) == naive_train(text, len(tok.merges), (EOT,))
    assert len(tok.merges) > 5


def test_every_token_string_is_unique():
    tok = BPETokenizer.train(SMALL_CORPORA["random"] + SMALL_CORPORA["unicode"], 256 + 200)
    strings = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    assert len(set(strings)) == len(strings) == 256 + 200


@pytest.mark.parametrize("name", list(SMALL_CORPORA))
def test_merges_equal_hf_bpe_trainer(name):
    text = SMALL_CORPORA[name]
    ours = BPETokenizer.train(text, 300)
    hf = json.loads(hf_train(text, 300).to_str())["model"]["merges"]
    hf = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in hf]
    from layer4_architectures.sequence.pretokenize import bytes_to_printable as show

    assert [(show(a), show(b)) for a, b in byte_merges(ours)] == hf


def test_truncated_equals_training_fewer_merges():
    text = SMALL_CORPORA["unicode"] * 3 + SMALL_CORPORA["ties"]
    big = BPETokenizer.train(text, 320)
    small = BPETokenizer.train(text, 290)
    cut = big.truncated(len(small.merges))
    assert cut.to_dict() == small.to_dict()


def test_training_stops_when_no_pair_is_left():
    tok = BPETokenizer.train("ab ab", 1000)
    assert tok.vocab_size == 256 + 2 + 1  # "ab", then " ab" = Ġ + ab; then the special


@pytest.mark.parametrize("size", [10, 256, "4096"])
def test_bad_vocab_size_is_named(size):
    with pytest.raises(TokenizerError, match=repr(size)):
        BPETokenizer.train("abc", size)


# ----------------------------------------------------------------------------------------------
# encoding against independent encoders
# ----------------------------------------------------------------------------------------------


def test_encoder_with_hf_merges_gives_hf_ids(tmp_path):
    text = SMALL_CORPORA["unicode"] * 5 + " ".join(SMALL_CORPORA.values()) * 3
    train, held_out = train_val_split(text + " the quick brown fox; 3.14 — ok?", 0.3)
    hf = hf_train(train, 400)
    hf.model.save(str(tmp_path))
    ours = BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    probe = held_out + f" {EOT} unseen wörds 🙂 " + held_out[::-1]
    assert ours.encode(probe) == hf.encode(probe).ids
    assert ours.decode(hf.encode(probe).ids) == probe


@pytest.fixture
def gpt2(require_data) -> BPETokenizer:
    return _load_gpt2()


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["tinystories", "tiny_shakespeare"])
def test_gpt2_files_match_hf_and_tiktoken_on_real_text(gpt2, dataset):
    import tiktoken

    from layer0_math import datasets

    text = getattr(datasets, f"load_{dataset}")()[:200_000]
    hf = hf_from_files(_gpt2_files("vocab.json"), _gpt2_files("merges.txt"))
    ranks = {gpt2.token_bytes(i): i for i in range(gpt2.vocab_size) if i != gpt2.eot_id}
    tt = tiktoken.Encoding(
        name="gpt2-local", pat_str=GPT2_REGEX, mergeable_ranks=ranks, special_tokens={EOT: 50256}
    )
    text = text + EOT + text[:5000]
    ours = gpt2.encode(text)
    assert ours == hf.encode(text).ids
    assert ours == tt.encode(text, allowed_special="all")
    assert gpt2.decode(ours) == text and len(ours) < len(text) / 3


@pytest.mark.data
def test_gpt2_known_ids(gpt2):
    # published GPT-2 ids: "Hello" 15496, " world" 995, <|endoftext|> 50256
    assert gpt2.encode("Hello world<|endoftext|>") == [15496, 995, 50256]
    assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256


# ----------------------------------------------------------------------------------------------
# files, dicts, arrays and bad input
# ----------------------------------------------------------------------------------------------


def test_save_load_and_dict_round_trip(small_tok, tmp_path):
    paths = small_tok.save(tmp_path)
    assert sorted(p.name for p in paths) == ["merges.txt", "tokenizer_meta.json", "vocab.json"]
    back = BPETokenizer.load(tmp_path, expected_vocab_size=small_tok.vocab_size)
    probe = " ".join(NAMED.values())
    assert back.encode(probe) == small_tok.encode(probe)
    assert back.to_dict() == small_tok.to_dict()
    d = json.loads(json.dumps(small_tok.to_dict()))
    assert BPETokenizer.from_dict(d).encode(probe) == small_tok.encode(probe)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert vocab["Ġ"] == ord(" ") and vocab[EOT] == small_tok.eot_id  # GPT-2's alphabet


def test_truncated_or_foreign_files_are_named(small_tok, tmp_path):
    small_tok.save(tmp_path)
    merges = tmp_path / "merges.txt"
    lines = merges.read_text().splitlines()
    merges.write_text("\n".join(lines[:-5]) + "\n")
    with pytest.raises(TokenizerError, match="merges.txt"):
        BPETokenizer.load(tmp_path)
    merges.write_text("\n".join(lines)[:-3])  # cut inside the last line
    with pytest.raises(TokenizerError, match="merges.txt"):
        BPETokenizer.load(tmp_path)
    small_tok.save(tmp_path)
    with pytest.raises(TokenizerError, match=rf"vocab.json.*expected {small_tok.vocab_size + 1}"):
        BPETokenizer.load(tmp_path, expected_vocab_size=small_tok.vocab_size + 1)
    vocab = tmp_path / "vocab.json"
    vocab.write_text(vocab.read_text()[:-40])
    with pytest.raises(TokenizerError, match="vocab.json"):
        BPETokenizer.load(tmp_path)
    d = small_tok.to_dict()
    del d["merges"]
    with pytest.raises(TokenizerError, match="merges"):
        BPETokenizer.from_dict(d)
    with pytest.raises(TokenizerError, match="ids outside"):
        BPETokenizer.from_dict({**small_tok.to_dict(), "vocab_size": 300})
    (tmp_path / "tokenizer_meta.json").write_text("{}")
    with pytest.raises(TokenizerError, match="tokenizer_meta.json"):
        BPETokenizer.load(tmp_path)
    with pytest.raises(TokenizerError, match="missing.json"):
        BPETokenizer.from_gpt2_files(tmp_path / "missing.json", merges)


def test_decode_of_invalid_utf8_and_unknown_ids(small_tok):
    assert small_tok.token_bytes(0x80) == b"\x80" and small_tok.token_bytes(0xC3) == b"\xc3"
    for lone in (0x80, 0xC3):  # a lone continuation byte, a lead byte with no continuation
        with pytest.raises(TokenizerError, match=rf"token {lone} at position 1"):
            small_tok.decode([ord("a"), lone, ord("b")])
        assert small_tok.decode([ord("a"), lone, ord("b")], errors="replace") == "a\ufffdb"
    assert small_tok.decode([0xC3, 0xA9]) == "é"  # valid across token boundaries
    for bad in (small_tok.vocab_size, -1):
        with pytest.raises(TokenizerError, match=rf"token id {bad} at position 2"):
            small_tok.decode([1, 2, bad])
    with pytest.raises(TokenizerError, match="'surrogateescape'"):
        small_tok.decode([1], errors="surrogateescape")
    with pytest.raises(TokenizerError, match="'x'"):
        small_tok.decode([1, "x"])
    with pytest.raises(TokenizerError, match="surrogate"):
        small_tok.encode("a\ud800")


def test_encode_to_array_dtype(small_tok):
    arr = small_tok.encode_to_array("hello there")
    assert arr.dtype == np.uint16 and arr.tolist() == small_tok.encode("hello there")
    # every two-byte token: 256 + 65536 ids, more than uint16 holds
    vocab = [bytes([b]) for b in range(256)] + [
        bytes([x, y]) for x in range(256) for y in range(256)
    ]
    vocab = vocab[:256] + vocab[:255:-1]  # the pair (x, y) gets id 256 + 65535 - (256 x + y)
    merges = [(x, y, 65791 - 256 * x - y) for x in range(256) for y in range(256)]
    big = BPETokenizer(vocab, merges, {})
    arr = big.encode_to_array("\x00\x00zz")
    assert arr.dtype == np.uint32 and arr.tolist() == big.encode("\x00\x00zz")
    assert arr.tolist()[0] == 65791


def test_train_val_split_holds_out_the_tail():
    train, val = train_val_split("0123456789", 0.1)
    assert (train, val) == ("012345678", "9")
    with pytest.raises(TokenizerError, match="1.5"):
        train_val_split("abc", 1.5)


@pytest.mark.data
@pytest.mark.slow
def test_the_deliverable_saves_a_loadable_tokenizer_and_measures_it(tmp_path):
    from layer0_math.lab import run_deliverable
    from layer4_architectures.deliverables import bpe_tokenizer

    small = {"max_chars": 40_000, "vocab_size": 500, "sweep": [256, 400, 500, 100_000]}
    m = run_deliverable(bpe_tokenizer, overrides=small, runs_dir=tmp_path)
    run = next(tmp_path.rglob("vocab_sweep.png")).parent
    tok = BPETokenizer.load(run, expected_vocab_size=500)
    assert m["vocab_size"] == 500 and tok.eot_id == 499
    assert 1.5 < m["bytes_per_token"] < m["train_bytes_per_token"] < 6  # 1.0 = bytes only
    assert m["gpt2_bytes_per_token"] > m["bytes_per_token"]  # 50257 ids compress more
    assert m["hf_same_tokens"] == 1 and m["hf_vocab_size"] == 500
    assert m["train_seconds"] > 0 and m["encode_mb_per_s"] > 0 and m["hf_train_seconds"] > 0
    sweep = json.loads((run / "sweep.json").read_text())
    bpt = [r["bytes_per_token"] for r in sweep]
    assert bpt[0] == 1.0 and bpt == sorted(bpt), "more merges compress more"
    assert sweep[-1]["vocab_size"] < 100_000, "the sweep stops where the text runs out of pairs"
    assert "|" in (run / "examples.md").read_text()
