"""Exported graphs against independent checks: the ONNX checker, dynamic axes in the proto,
ORT and TorchScript vs eager at shapes other than the export's example, the recorded parity,
and a planted difference that must stop the registration."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from layer3_framework.checkpoint import load_model
from layer6_serving.export import bundle, export_bundle
from layer6_serving.export.parity import ParityError, cached_vs_full
from layer6_serving.export.wrappers import ClassifierGraph, GPTPrefill
from layer6_serving.registry import ModelRegistry
from layer6_serving.runtime import GraphDecoder, OnnxGraph, TorchGraph, torchscript_graph

NAMES = ("gpt", "ddpm", "resnet")


@pytest.mark.parametrize("name", NAMES)
def test_manifest_records_parity_within_tolerance(tiny_registry, name):
    man = tiny_registry.manifest(name)
    parity = man["parity"]
    assert parity["tolerance"] == 1e-4
    for fmt in ("onnx", "torchscript"):
        diffs = {k: v for k, v in parity[fmt].items() if isinstance(v, float)}
        assert any(k.endswith("_real") for k in diffs) and any(k.endswith("_random") for k in diffs)
        assert max(diffs.values()) <= 1e-4, diffs
    assert parity["max_abs_diff"] == max(
        v for f in ("onnx", "torchscript") for v in parity[f].values() if isinstance(v, float)
    )
    if name == "gpt":
        assert parity["onnx"]["greedy_match"] and parity["torchscript"]["greedy_match"]
        for fmt in ("onnx", "torchscript"):  # a prefix, and every position of the context
            assert parity[fmt]["cache_vs_full"] <= 1e-4
            assert 0 < parity[fmt]["cache_vs_full_context"] <= 1e-4
    assert set(man["files"]) >= {"eager", "onnx", "torchscript"}
    assert man["source"]["step"] == 1 and man["source"]["checkpoint"].startswith("step_")


@pytest.mark.parametrize("name", NAMES)
def test_onnx_files_pass_the_checker_and_have_a_dynamic_batch(tiny_registry, name):
    man = tiny_registry.manifest(name)
    for role, rel in man["files"]["onnx"].items():
        proto = onnx.load(str(tiny_registry.file(name, 1, rel)))
        onnx.checker.check_model(proto, full_check=True)
        first = proto.graph.input[0].type.tensor_type.shape.dim[0]
        assert first.dim_param and not first.dim_value, (role, first)  # symbolic, not fixed


def test_classifier_graphs_equal_eager_at_new_batch_sizes(tiny_registry, tiny_checkpoints):
    pre = tiny_registry.manifest("resnet")["preprocessing"]
    model = load_model(tiny_checkpoints["classifier"])
    eager = TorchGraph(ClassifierGraph(model, pre["mean"], pre["std"], True).eval())
    files = tiny_registry.manifest("resnet")["files"]
    ort = OnnxGraph(tiny_registry.file("resnet", 1, files["onnx"]["model"]))
    ts = torchscript_graph(tiny_registry.file("resnet", 1, files["torchscript"]["model"]))
    for n in (1, 5, 33):  # the export's example had 2
        x = np.random.default_rng(n).random((n, 3, 32, 32), dtype=np.float32)
        (ref,) = eager(x)
        assert np.abs(ort(x)[0] - ref).max() < 1e-4
        assert np.abs(ts(x)[0] - ref).max() < 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_gpt_graphs_at_new_batch_and_lengths(tiny_registry, tiny_checkpoints, fmt):
    """Prefill and step at batch 1 and 3, prompt lengths 1 and 31 (the example was 2 x 8)."""
    gpt = load_model(tiny_checkpoints["generator"])
    files = tiny_registry.manifest("gpt")["files"][fmt]
    load = OnnxGraph if fmt == "onnx" else torchscript_graph
    decoder = GraphDecoder(
        *(load(tiny_registry.file("gpt", 1, files[r])) for r in ("prefill", "step"))
    )
    rng = np.random.default_rng(0)
    for batch, prefix in ((1, 1), (3, 30), (2, 16)):
        ids = rng.integers(0, gpt.config.vocab_size, size=(batch, 32))
        assert cached_vs_full(gpt, decoder, ids, prefix) < 1e-4


def test_a_wrong_position_offset_is_caught(tiny_checkpoints):
    """Plant the classic bug (RoPE at position 0 for every cached token): the check must fail."""
    gpt = load_model(tiny_checkpoints["generator"])
    prefill = TorchGraph(GPTPrefill(gpt).eval())

    class OffByOne(GraphDecoder):
        def step(self, tokens, state):
            logits, new = super().step(
                tokens, state.__class__(state.length - 1, state.batch, state.data)
            )
            return logits, state.__class__(state.length + 1, state.batch, new.data)

    from layer6_serving.export.wrappers import GPTStep

    decoder = OffByOne(prefill, TorchGraph(GPTStep(gpt).eval()))
    ids = np.random.default_rng(0).integers(0, gpt.config.vocab_size, size=(1, 20))
    assert cached_vs_full(gpt, decoder, ids, 5) > 1e-4  # the export tolerance
    assert (
        cached_vs_full(gpt, GraphDecoder(prefill, TorchGraph(GPTStep(gpt).eval())), ids, 5) < 1e-5
    )


def test_a_graph_that_differs_is_not_registered(tmp_path, tiny_checkpoints, monkeypatch):
    real_load = bundle._load_graph

    class Nudged:
        def __init__(self, graph):
            self.graph = graph

        def __call__(self, *inputs):
            return [o + 1e-3 for o in self.graph(*inputs)]

    monkeypatch.setattr(bundle, "_load_graph", lambda *a: Nudged(real_load(*a)))
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ParityError, match="max abs diff 0.001"):
        export_bundle(
            reg, "resnet", tiny_checkpoints["classifier"], "classifier", formats=("torchscript",)
        )
    assert reg.versions("resnet") == []


def test_eager_only_bundle_and_extra_fields(tmp_path, tiny_checkpoints):
    reg = ModelRegistry(tmp_path)
    v = export_bundle(
        reg,
        "resnet",
        tiny_checkpoints["classifier"],
        "classifier",
        formats=(),
        extra={"reference": {"mean": [0.5]}, "note": "x"},
    )
    man = reg.manifest("resnet", v)
    assert man["files"] == {"eager": {"checkpoint": "checkpoint"}}
    assert man["reference"] == {"mean": [0.5]} and man["note"] == "x"
    assert man["parity"]["max_abs_diff"] is None
    # the copy is a layer-3 checkpoint with the same weights
    a, b = (
        load_model(reg.file("resnet", v, "checkpoint")),
        load_model(tiny_checkpoints["classifier"]),
    )
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), k


def test_int8_files_are_smaller_and_recorded(tiny_registry):
    for name in ("gpt", "resnet"):
        man = tiny_registry.manifest(name)
        for role, stats in man["export"]["onnx-int8"].items():
            fp32 = tiny_registry.file(name, 1, man["files"]["onnx"][role]).stat().st_size
            int8 = tiny_registry.file(name, 1, man["files"]["onnx-int8"][role]).stat().st_size
            assert int8 < fp32 and stats["size_ratio"] == pytest.approx(int8 / fp32)
            assert stats["max_abs_diff_vs_fp32"] > 0
    assert "onnx-int8" not in tiny_registry.manifest("ddpm")["files"]


def test_bad_kind_and_format(tmp_path, tiny_checkpoints):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(ValueError, match="unknown model kind 'vae'"):
        export_bundle(reg, "x", tiny_checkpoints["classifier"], "vae")
    with pytest.raises(ValueError, match="unknown export formats"):
        export_bundle(reg, "x", tiny_checkpoints["classifier"], "classifier", formats=("tflite",))
