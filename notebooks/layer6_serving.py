# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (dlstack)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Layer 6: a model leaves Python, and we prove it is still the same model
#
# Serving runs a trained model outside the training code: as an ONNX graph in ONNX Runtime (or a
# TorchScript file), behind an HTTP service. The risk is silent change: a graph specialised to the
# example's batch size, an op translated slightly differently. Layer 6's rule is *parity*: every
# exported graph is compared with eager PyTorch on the same inputs before it is registered.
#
# `export_onnx` (`layer6_serving/export/onnx_export.py`) runs `torch.onnx.export(dynamo=True)`:
# `torch.export` traces the module to an FX graph with *symbolic* shapes, declared as
# `torch.export.Dim` ranges, and the exporter proves the graph valid over the whole range or
# refuses. `OnnxGraph` and `TorchGraph` (`runtime.py`) give both the same numpy-in, numpy-out face.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import onnx
import torch
from torch import nn

from layer6_serving.export.onnx_export import export_onnx
from layer6_serving.export.parity import max_abs_diff
from layer6_serving.runtime import OnnxGraph, TorchGraph

SMALL = os.environ.get("DLSTACK_NOTEBOOK_SMALL") == "1"
BATCHES = (1, 7, 64) if SMALL else (1, 7, 64, 1024)
torch.set_num_threads(1)
torch.manual_seed(0)
folder = Path(tempfile.mkdtemp(prefix="layer6-notebook-"))  # scratch space, not the repository

# %% [markdown]
# ## A tiny classifier, exported with a dynamic batch axis

# %%
model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1), nn.GELU(), nn.AdaptiveAvgPool2d(4),  # (B, 8, 4, 4)
    nn.Flatten(), nn.LayerNorm(128), nn.Linear(128, 10),
).eval()  # fmt: skip
batch = torch.export.Dim("batch", min=1, max=4096)
info = export_onnx(
    model, (torch.randn(2, 1, 28, 28),), folder / "classifier.onnx",
    input_names=["images"], output_names=["logits"], dynamic_shapes={"input": {0: batch}},
)  # fmt: skip
proto = onnx.load(folder / "classifier.onnx")
print(f"exported in {info['seconds']:.1f} s: {info['bytes']:,} bytes, opset {info['opset']}")
print(
    "input shape:",
    [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim],
)
print("operators:", sorted({n.op_type for n in proto.graph.node}))

# %% [markdown]
# ## Parity: ONNX Runtime against eager PyTorch, at batch sizes it was never traced with
#
# float32 arithmetic in a different order (ONNX Runtime fuses and reorders) differs by rounding
# only: about 1e-6 on logits of order 1. A real discrepancy (a wrong op, a baked-in shape) is of
# order 1 or fails to run at all.

# %%
onnx_graph, eager = OnnxGraph(folder / "classifier.onnx"), TorchGraph(model)
rng = np.random.default_rng(0)
diffs = {}
for n in BATCHES:
    images = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    diffs[n] = max_abs_diff(onnx_graph(images), eager(images))
    print(f"batch {n:>5}: max |onnx − eager| = {diffs[n]:.1e}")
assert max(diffs.values()) < 1e-4
assert onnx_graph(images)[0].shape == (BATCHES[-1], 10)

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar([str(n) for n in diffs], [max(d, 1e-9) for d in diffs.values()], label="max |onnx − eager|")
ax.axhline(1e-4, color="red", linestyle="--", label="parity tolerance")
ax.set(
    title="ONNX Runtime vs eager PyTorch",
    xlabel="batch size",
    ylabel="max abs difference",
    yscale="log",
)
ax.legend()
plt.show()

# %% [markdown]
# **What to take upward.** `python -m layer6_serving` does this for layer 4's real models: the
# GPT as a prefill graph and a KV-cache step graph (cached decoding checked against the full
# forward, token for token), the DDPM denoiser and the CIFAR ResNet, then registers them and
# serves them with FastAPI (`make serve`).
