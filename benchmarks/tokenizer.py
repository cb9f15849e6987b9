"""BPE tokenizer speed: our pure-Python trainer and encoder vs HF ``tokenizers`` and ``tiktoken``.

Training: vocab 500 on the first 133 kB of Tiny Shakespeare (CS336's speed test: < 1.5 s required,
its reference 0.38 s), then vocab 4096 and 10000 on the TinyStories sample (794 kB), each against
HF ``tokenizers``' ``BpeTrainer`` (Rust, its default thread pool) on the same text with the same
settings (they learn the same merges: ``tests/layer4/test_bpe.py``). Encoding: the TinyStories
sample with a cold cache (a fresh tokenizer) and a warm one, against HF's ``Tokenizer.encode`` and
``tiktoken`` built offline from the same merges; then the same with GPT-2's own files. Rounds
alternate ours / theirs and the best of ``--repeats`` is kept. The last line is JSON with
``train_vs_hf`` and ``encode_vs_hf`` (our seconds / HF's seconds: below 3 and 5 is the goal).

    DLSTACK_DATA=/work/shared/data python benchmarks/tokenizer.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from layer0_math.datasets import load_tiny_shakespeare, load_tinystories
from layer4_architectures.deliverables.bpe_tokenizer import hf_bpe
from layer4_architectures.sequence.bpe import GPT2_PATTERN, BPETokenizer
from layer4_architectures.sequence.pretokenize import bytes_to_printable


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeats`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def hf_train(text: str, vocab_size: int):
    hf, trainer = hf_bpe(vocab_size)
    hf.train_from_iterator([text], trainer)
    return hf


def hf_from_files(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return tok


def tiktoken_of(tok: BPETokenizer):
    """tiktoken built offline from our tokenizer: a token's rank is its id (merge order)."""
    import tiktoken

    specials = set(tok.special_tokens.values())
    ranks = {tok.token_bytes(i): i for i in range(tok.vocab_size) if i not in specials}
    return tiktoken.Encoding(
        name="local", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )


def train_round(name: str, text: str, vocab: int, repeats: int) -> dict[str, float]:
    ours_s, ours = best_of(lambda: BPETokenizer.train(text, vocab), repeats)
    hf_s, hf = best_of(lambda: hf_train(text, vocab), repeats)
    print(
        f"train {name:<22} vocab {vocab:>5} ({ours.vocab_size:>5} reached) | ours {ours_s:6.3f} s"
        f" | HF {hf_s:6.3f} s | ours/HF {ours_s / hf_s:5.2f}"
    )
    return {"ours_s": ours_s, "hf_s": hf_s, "ratio": ours_s / hf_s, "vocab": ours.vocab_size}


def encode_round(name: str, text: str, ours_factory, hf, tt, repeats: int) -> dict[str, float]:
    mb = len(text.encode("utf-8")) / 1e6
    cold_s, ids = best_of(lambda: ours_factory().encode_ordinary(text), repeats)
    warm_tok = ours_factory()
    warm_tok.encode_ordinary(text)
    warm_s, _ = best_of(lambda: warm_tok.encode_ordinary(text), repeats)
    hf_s, hf_enc = best_of(lambda: hf.encode(text), repeats)
    tt_s, tt_ids = best_of(lambda: tt.encode_ordinary(text), repeats)
    # HF numbers its tokens its own way: compare the token strings; tiktoken's ranks are our ids
    ours_tokens = [bytes_to_printable(warm_tok.token_bytes(i)) for i in ids]
    if ours_tokens != hf_enc.tokens or ids != tt_ids:
        raise AssertionError(f"{name}: the three encoders disagree")
    print(
        f"encode {name:<21} {mb:.2f} MB | ours cold {mb / cold_s:5.2f} MB/s, warm "
        f"{mb / warm_s:5.2f} | HF {mb / hf_s:5.2f} | tiktoken {mb / tt_s:5.2f} | "
        f"ours/HF {cold_s / hf_s:5.2f} | ours/tiktoken {cold_s / tt_s:5.2f}"
    )
    return {
        "ours_mb_s": mb / cold_s,
        "ours_warm_mb_s": mb / warm_s,
        "hf_mb_s": mb / hf_s,
        "tiktoken_mb_s": mb / tt_s,
        "vs_hf": cold_s / hf_s,
        "vs_tiktoken": cold_s / tt_s,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    shakespeare = load_tiny_shakespeare()[:133_000]
    stories = load_tinystories()
    parallel = os.environ.get("TOKENIZERS_PARALLELISM", "unset")
    print(f"HF tokenizers: TOKENIZERS_PARALLELISM={parallel}, {os.cpu_count()} CPUs")
    train = {
        "shakespeare_500": train_round("shakespeare 133 kB", shakespeare, 500, args.repeats),
        "tinystories_4096": train_round("tinystories 794 kB", stories, 4096, args.repeats),
        "tinystories_10000": train_round("tinystories 794 kB", stories, 10000, args.repeats),
    }
    trained = BPETokenizer.train(stories, 4096)
    hf4k = hf_train(stories, 4096)
    encode = {
        "tinystories_4096": encode_round(
            "ours-4096 merges",
            stories,
            lambda: BPETokenizer.from_dict(trained.to_dict()),
            hf4k,
            tiktoken_of(trained),
            args.repeats,
        )
    }
    gpt2 = _gpt2_folder()
    if gpt2 is not None:
        g = BPETokenizer.from_gpt2_files(gpt2 / "vocab.json", gpt2 / "merges.txt")
        encode["tinystories_gpt2"] = encode_round(
            "GPT-2 files",
            stories,
            lambda: BPETokenizer.from_dict(g.to_dict()),
            hf_from_files(gpt2),
            tiktoken_of(g),
            args.repeats,
        )
    s500 = train["shakespeare_500"]["ours_s"]
    print(f"CS336 speed test (vocab 500, 133 kB): {s500:.3f} s (required < 1.5 s)")
    figures = {
        "train_vs_hf": train["tinystories_4096"]["ratio"],
        "encode_vs_hf": encode["tinystories_4096"]["vs_hf"],
        "encode_vs_tiktoken": encode["tinystories_4096"]["vs_tiktoken"],
        "train_shakespeare500_seconds": s500,
        "train_vs_hf_shakespeare500": train["shakespeare_500"]["ratio"],
        "train_vs_hf_tinystories10000": train["tinystories_10000"]["ratio"],
        "encode_mb_per_s": encode["tinystories_4096"]["ours_mb_s"],
        "hf_encode_mb_per_s": encode["tinystories_4096"]["hf_mb_s"],
        "tiktoken_encode_mb_per_s": encode["tinystories_4096"]["tiktoken_mb_s"],
        "train": train,
        "encode": encode,
    }
    print(json.dumps(figures))


def _gpt2_folder() -> Path | None:
    for folder in os.environ.get("DLSTACK_DATA", "").split(":"):
        if folder and (Path(folder) / "gpt2" / "merges.txt").exists():
            return Path(folder) / "gpt2"
    return None


if __name__ == "__main__":
    main()
