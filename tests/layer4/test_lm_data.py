"""TokenText: the held-out split, the tokenizer cache, memory-mapped ids, hashed random windows,
contiguous evaluation windows, bytes per token and bits per byte, exact resume, bad input."""

import json
import math

import numpy as np
import pytest
import torch

from layer3_framework.checkpoint import read_checkpoint
from layer3_framework.data import sample_key
from layer3_framework.train import compose, run
from layer4_architectures.sequence import bpe
from layer4_architectures.sequence.bpe import BPETokenizer
from layer4_architectures.sequence.data import (
    CharTokenizer,
    RandomWindows,
    TokenText,
    bits_per_byte,
    load_tokenizer,
)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def synthetic(**kw) -> TokenText:
    base = {"name": "tinystories", "source": "synthetic", "seq_len": 16, "vocab_size": 300}
    return TokenText(**{**base, **kw})


def test_splits_tokenize_and_decode_back_to_the_text():
    data = synthetic()
    data.setup(0)
    text = data.text(0)
    cut = int(len(text) * 0.9)  # the last 10% of the characters is validation
    tok = data.tokenizer_object()
    assert tok.decode(np.asarray(data.streams["train"]).tolist()) == text[:cut]
    assert tok.decode(np.asarray(data.streams["val"]).tolist()) == text[cut:]
    assert data.model_kwargs() == {"vocab_size": tok.vocab_size}


def test_the_tokenizer_learns_from_the_training_split_only():
    data = synthetic()
    data.setup(0)
    text = data.text(0)
    reference = BPETokenizer.train(text[: int(len(text) * 0.9)], 300)
    assert data.tokenizer_object().to_dict() == reference.to_dict()


def test_ids_are_memory_mapped_uint16_and_the_cache_is_reused(monkeypatch, tmp_path):
    synthetic().setup(0)
    cached = list((tmp_path / "cache" / "dlstack" / "tokenizers").iterdir())
    assert len(cached) == 1
    assert sorted(p.name for p in cached[0].iterdir()) == ["tokenizer.json", "train.npy", "val.npy"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached tokenizer should have been loaded")

    monkeypatch.setattr(BPETokenizer, "train", no_training)
    again = synthetic()
    again.setup(0)
    assert isinstance(again.streams["train"], np.memmap)
    assert again.streams["train"].dtype == np.uint16
    with pytest.raises(AssertionError, match="cached tokenizer"):  # another vocabulary trains
        synthetic(vocab_size=290).setup(0)


def test_the_cache_key_changes_with_the_tokenizer_code(monkeypatch):
    data = synthetic()
    folder = data._cache_folder("train text", "val text")
    monkeypatch.setattr("inspect.getsource", lambda module: "changed trainer")
    assert data._cache_folder("train text", "val text") != folder
    assert bpe  # the module whose source is hashed


def test_training_windows_are_a_function_of_seed_epoch_and_index():
    ids = np.arange(1000, dtype=np.uint16)
    a, b = RandomWindows(ids, 16, 50, seed=3), RandomWindows(ids, 16, 50, seed=3)
    for epoch in (0, 4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in (0, 7, 49):
            x, y = a[i]
            start = sample_key(3, epoch, i) % (1000 - 16)
            assert torch.equal(x, torch.arange(start, start + 16))
            assert torch.equal(y, x + 1)  # the window shifted by one
            assert torch.equal(b[i][0], x)
    a.set_epoch(0)
    first = [a.start(i) for i in range(50)]
    a.set_epoch(1)
    assert first != [a.start(i) for i in range(50)]
    assert max(first) <= 1000 - 17  # the target of the last start is still in the stream


def test_evaluation_windows_tile_the_validation_stream():
    data = synthetic(n_test=None)
    test = data.setup(0).test
    val = np.asarray(data.streams["val"], dtype=np.int64)
    xs = torch.cat([test[i][0] for i in range(len(test))])
    ys = torch.cat([test[i][1] for i in range(len(test))])
    assert len(test) == (len(val) - 1) // 16
    assert torch.equal(xs, torch.from_numpy(val[: len(xs)]))
    assert torch.equal(ys, torch.from_numpy(val[1 : len(xs) + 1]))


def test_bytes_per_token_counts_the_evaluated_targets():
    data = synthetic()
    test = data.setup(0).test
    targets = torch.cat([test[i][1] for i in range(len(test))]).tolist()
    n_bytes = len(data.tokenizer_object().decode(targets).encode("utf-8"))
    assert data.bytes_per_token_val() == pytest.approx(n_bytes / len(targets), rel=1e-12)
    assert data.preprocessing()["bytes_per_token_val"] == data.bytes_per_token_val()


def test_bits_per_byte_closed_forms():
    # a uniform guess over 256 byte values costs 8 bits per byte, whatever the token size
    assert bits_per_byte(math.log(256), 1.0) == pytest.approx(8.0, rel=1e-12)
    assert bits_per_byte(2 * math.log(256), 2.0) == pytest.approx(8.0, rel=1e-12)
    with pytest.raises(ValueError, match="bytes_per_token"):
        bits_per_byte(1.0, 0.0)


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_the_preprocessing_rebuilds_the_tokenizer(kind):
    data = synthetic(tokenizer=kind)
    data.setup(0)
    pre = json.loads(json.dumps(data.preprocessing()))  # what a checkpoint sidecar holds
    tok = load_tokenizer(pre)
    assert type(tok) is (BPETokenizer if kind == "bpe" else CharTokenizer)
    text = "once upon a time the dog said hello."
    assert tok.encode(text) == data.tokenizer_object().encode(text)
    assert tok.decode(tok.encode(text)) == text


def test_char_vocabulary_is_the_corpus_characters():
    data = synthetic(tokenizer="char")
    data.setup(0)
    assert data.tokenizer_object().vocab.chars == tuple(sorted(set(data.text(0))))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tokenizer": "wordpiece"}, "data.tokenizer 'wordpiece'"),
        ({"vocab_size": 100}, "data.vocab_size must be >= 257"),
        ({"seq_len": 0}, "data.seq_len must be >= 1"),
        ({"path": "/no/such/file.txt"}, "data.path='/no/such/file.txt'"),
        ({"name": "novel"}, "unknown dataset 'novel'"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthetic(**kwargs)


def test_bad_windows_and_preprocessing_are_refused():
    with pytest.raises(ValueError, match="longer than seq_len=16"):
        RandomWindows(np.arange(10, dtype=np.uint16), 16, 4)
    with pytest.raises(ValueError, match="tokenizer_kind='sentencepiece'"):
        load_tokenizer({"tokenizer_kind": "sentencepiece", "tokenizer": {}})


def test_a_text_file_of_your_own_is_split_the_same_way(tmp_path):
    path = tmp_path / "stories.txt"
    path.write_text("Once upon a time there was a cat. " * 40, encoding="utf-8")
    data = TokenText(name="tinystories", path=str(path), tokenizer="char", seq_len=8)
    data.setup(0)
    assert (
        data.tokenizer_object().decode(np.asarray(data.streams["val"]).tolist())
        == (path.read_text()[int(len(path.read_text()) * 0.9) :])
    )


@pytest.mark.slow
def test_a_resumed_gpt_run_ends_bit_for_bit_where_the_unbroken_one_does(tmp_path):
    tiny = [
        "experiment=gpt_tinystories",
        "data.source=synthetic",
        "data.vocab_size=300",
        "data.seq_len=16",
        "data.batch_size=4",
        "data.n_train=12",  # 3 batches an epoch: the run crosses epochs
        "data.n_test=4",
        "model.n_layer=1",
        "model.n_embd=32",
        "model.n_head=2",
        "optim.total_steps=8",
        "trainer.log_every=1",
        "trainer.progress=false",
        "logger=jsonl",
    ]
    run(compose([*tiny, "trainer.max_steps=8"]), tmp_path / "whole")
    run(compose([*tiny, "trainer.max_steps=5", "trainer.ckpt_every=5"]), tmp_path / "stopped")
    resumed = [*tiny, "trainer.max_steps=8", f"resume={tmp_path / 'stopped'}"]
    run(compose(resumed), tmp_path / "resumed")
    ref, _ = read_checkpoint(tmp_path / "whole" / "checkpoints" / "step_00000008.safetensors")
    got, _ = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_00000008.safetensors")
    assert ref.keys() == got.keys()
    for name in ref:
        assert torch.equal(ref[name], got[name]), name
