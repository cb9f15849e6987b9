"""``quantization``: int8 versions of layer 4's GPT and ResNet-20, each against fp32 in one table
(quality change, size, CPU latency at batch 1 and 8), and a per-layer sensitivity plot.

1. **GPT** (TinyStories): the blocks' linears (attention and MLP projections, ~75% of the
   weights) as dynamic int8 (``torch.ao.quantization.quantize_dynamic``) and as weight-only int8
   from the scratch quantiser (one symmetric scale per output row). The tied embedding /
   unembedding stays fp32. Quality: loss and perplexity on the held-out 10% of TinyStories (the
   split layer 4 held out), every window of ``seq_len`` tokens.
2. **ResNet-20** (CIFAR-10): static int8 by FX graph mode (conv-BN-ReLU fused, residual adds as
   int8 adds, activation ranges calibrated on ``n_calibration`` training images), x86 engine.
3. **QAT**: the same graph with fake-quant, fine-tuned for ``qat_steps`` steps with layer 3's
   trainer (BN and observers frozen for the last 30%), converted to int8.

Images are normalised with the mean and std the ResNet's checkpoint states (its preprocessing),
which the table records. Sensitivity: one layer at a time fake-quantised (scratch quantiser,
weights per channel, input per tensor), the accuracy drop and KL(fp32 ‖ quantised) of the
predictions on ``n_sensitivity`` test images. Layer 6 measured ONNX Runtime's dynamic int8 of the
same models (``layer6_serving/export/quantize.py``); this deliverable stays in PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset

from layer0_math.datasets import load
from layer0_math.lab import RunContext, deliverable, pyplot
from layer3_framework import CharDataset, ImageDataset, build_loader
from layer4_architectures.sequence.bpe import train_val_split
from layer4_architectures.sequence.data import HOLDOUT, load_tokenizer
from layer7_research.artifacts import load_base, preprocessing, source_dir
from layer7_research.efficient import ptq, qat

Model = Callable[[torch.Tensor], torch.Tensor]


@deliverable(
    quick={
        "engine": "x86",
        "gpt_eval_windows": None,  # None: every window of the held-out split
        "gpt_batch_size": 16,
        "n_test": None,  # CIFAR-10 test images (None: all 10,000)
        "eval_batch_size": 500,
        "n_calibration": 512,
        "calibration_batch_size": 64,
        "qat_steps": 100,
        "qat_lr": 2e-3,
        "qat_batch_size": 64,
        "n_sensitivity": 1000,
        "sensitivity_calibration_batches": 2,
        "latency_batches": [1, 8],
        "latency_repeats": 20,
    },
    full={"qat_steps": 1500, "qat_batch_size": 128, "n_sensitivity": 10000, "latency_repeats": 100},
    headline=[
        "gpt_dynamic_ppl_change",
        "gpt_weight_only_ppl_change",
        "resnet_static_acc_change",
        "resnet_qat_acc_change",
        "resnet_static_size_ratio",
        "resnet_static_speedup_b8",
    ],
)
def quantization(ctx: RunContext) -> dict[str, Any]:
    """GPT dynamic and weight-only int8; ResNet static int8 and QAT; sensitivity; one table."""
    rows = _gpt_rows(ctx)
    resnet = load_base("resnet")
    pre = preprocessing(resnet)
    data = ptq.image_data(
        pre, "cifar10", augment=True, crop_padding=4, flip=True,
        batch_size=ctx.config["qat_batch_size"], eval_batch_size=ctx.config["eval_batch_size"],
        n_test=ctx.config["n_test"],
    )  # fmt: skip
    data.setup(ctx.seed)
    calibration = _calibration(ctx, data)
    rows += _resnet_rows(ctx, resnet, data, calibration)
    sens = _sensitivity(ctx, resnet, data, calibration)
    ctx.write_json("table.json", {"rows": rows, "sensitivity": sens})
    ctx.write_text("table.md", _table(ctx, rows, pre, len(data.setup(ctx.seed).test)))
    _plot_sensitivity(ctx, sens)
    _plot_tradeoff(ctx, rows)
    sources = {f"{m}_checkpoint": str(source_dir(m)) for m in ("gpt", "resnet")}
    return {**_metrics(rows, sens), **sources}


# ----------------------------------------------------------------------------- measuring


def _measure(ctx: RunContext, model: nn.Module, call: Model, quality: dict, sample) -> dict:
    """Size and latency of one variant (batch sizes ``latency_batches``) with its quality."""
    row = {**quality, "bytes": ptq.model_bytes(model)}
    for b in ctx.config["latency_batches"]:
        row[f"latency_b{b}_ms"] = ptq.latency_ms(call, sample(b), ctx.config["latency_repeats"])
    return row


def _relative(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's change, size ratio and speed-up against its model's fp32 row (the first)."""
    base = rows[0]
    for r in rows:
        r["change"] = r["value"] - base["value"]
        r["size_ratio"] = r["bytes"] / base["bytes"]
        for key in [k for k in r if k.startswith("latency_")]:
            r[key.replace("latency_", "speedup_").removesuffix("_ms")] = base[key] / r[key]
    return rows


# ----------------------------------------------------------------------------- GPT


def _gpt_windows(ctx: RunContext, gpt: nn.Module) -> CharDataset:
    """The held-out TinyStories split as non-overlapping windows of the GPT's ``seq_len``."""
    pre = preprocessing(gpt)
    _, val_text = train_val_split(str(load("tinystories")), HOLDOUT)
    ids = np.asarray(load_tokenizer(pre).encode_to_array(val_text))
    n, t = ctx.config["gpt_eval_windows"], pre["seq_len"]
    return CharDataset(ids if n is None else ids[: n * t + 1], t)


def _gpt_rows(ctx: RunContext) -> list[dict[str, Any]]:
    gpt = load_base("gpt")
    windows = _gpt_windows(ctx, gpt)
    loader = build_loader(windows, ctx.config["gpt_batch_size"], shuffle=False)

    def sample(b: int) -> torch.Tensor:
        return torch.stack([windows[i % len(windows)][0] for i in range(b)])  # (b, T)

    engine = ctx.config["engine"]
    variants = {
        "fp32": gpt,
        "dynamic int8 (torch)": ptq.dynamic_int8(gpt, "blocks", engine),
        "weight-only int8 (scratch)": ptq.weight_only_int8(gpt, "blocks"),
    }
    rows = []
    for method, model in ctx.progress(variants.items(), desc="GPT int8", total=len(variants)):
        call = ptq.run_engine(model, engine)
        m = ptq.mean_metrics(call, loader)
        quality = {"model": "GPT", "method": method, "metric": "val perplexity"}
        quality.update(value=math.exp(m["loss"]), loss=m["loss"])
        rows.append(_measure(ctx, model, call, quality, sample))
    for r in rows:
        r["n_eval"] = f"{len(windows)} windows x {windows.seq_len} tokens"
    return _relative(rows)


# ----------------------------------------------------------------------------- ResNet


def _calibration(ctx: RunContext, data: Any) -> list[torch.Tensor]:
    """``n_calibration`` training images (no augmentation) in batches: the activation ranges."""
    train = data.setup(ctx.seed).train
    n = min(ctx.config["n_calibration"], len(train))
    plain = ImageDataset(
        train.images[:n].numpy(), train.labels[:n].numpy(), data.transform, augment=False
    )
    loader = build_loader(plain, ctx.config["calibration_batch_size"], shuffle=False)
    return [x for x, _ in loader]


def _resnet_rows(
    ctx: RunContext, resnet: nn.Module, data: Any, calibration: list[torch.Tensor]
) -> list[dict[str, Any]]:
    test = data.setup(ctx.seed).test
    loader = data.eval_loader(ctx.seed)
    engine = ctx.config["engine"]

    def sample(b: int) -> torch.Tensor:
        return torch.stack([test[i][0] for i in range(b)])  # (b, 3, 32, 32)

    variants = {
        "fp32": resnet,
        "static int8 (FX, calibrated)": ptq.static_int8(resnet, calibration, engine),
        "QAT int8 (FX)": _qat_model(ctx, resnet, data),
    }
    rows = []
    for method, model in ctx.progress(variants.items(), desc="ResNet int8", total=len(variants)):
        call = ptq.run_engine(model, engine)
        m = ptq.mean_metrics(call, loader)
        quality = {"model": "ResNet-20", "method": method, "metric": "test accuracy"}
        quality.update(value=m["accuracy"], loss=m["loss"], n_eval=f"{len(test)} images")
        rows.append(_measure(ctx, model, call, quality, sample))
    return _relative(rows)


def _qat_model(ctx: RunContext, resnet: nn.Module, data: Any) -> nn.Module:
    """Prepare for QAT, fine-tune ``qat_steps`` steps with augmentation, convert to int8."""
    cfg = ctx.config
    example = next(iter(data.eval_loader(ctx.seed)))[0][:2]
    prepared = qat.prepare_qat(resnet, example, cfg["engine"])
    torch.manual_seed(ctx.seed)
    history = qat.finetune(
        prepared, data.train_loader(ctx.seed), cfg["qat_steps"], cfg["qat_lr"],
        progress=True,
    )  # fmt: skip
    ctx.write_json("qat_history.json", history)
    return qat.convert_qat(prepared, cfg["engine"])


# ----------------------------------------------------------------------------- sensitivity


@torch.inference_mode()
def _logits(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    return torch.cat([model(x) for x, _ in batches]).float()  # (N, classes)


def _sensitivity(
    ctx: RunContext, resnet: nn.Module, data: Any, calibration: list[torch.Tensor]
) -> dict[str, Any]:
    """Per layer: accuracy drop and KL(p_fp32 ‖ p_quantised) with only that layer int8."""
    test = data.setup(ctx.seed).test
    n = min(ctx.config["n_sensitivity"], len(test))
    batches = list(
        build_loader(Subset(test, range(n)), ctx.config["eval_batch_size"], shuffle=False)
    )
    labels = torch.cat([y for _, y in batches])
    ref = _logits(resnet, batches)
    ref_acc = (ref.argmax(1) == labels).float().mean().item()

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = _logits(model, batches)
        kl = F.kl_div(
            out.log_softmax(1), ref.log_softmax(1), log_target=True, reduction="batchmean"
        )
        acc = (out.argmax(1) == labels).float().mean().item()
        return {"accuracy_drop": ref_acc - acc, "kl": kl.item()}

    calib = calibration[: ctx.config["sensitivity_calibration_batches"]]
    per_layer = ptq.sensitivity(
        resnet, calib, evaluate, progress=lambda it: ctx.progress(it, desc="sensitivity")
    )
    return {"n_images": n, "fp32_accuracy": ref_acc, "layers": per_layer}


# ----------------------------------------------------------------------------- report


def _table(ctx: RunContext, rows: list[dict[str, Any]], pre: dict[str, Any], n_test: int) -> str:
    bs = ctx.config["latency_batches"]
    head = (
        f"CPU, {torch.get_num_threads()} threads, engine {ctx.config['engine']}; latency = median "
        f"of {ctx.config['latency_repeats']} forward calls. CIFAR-10 normalised with the "
        f"checkpoint's mean {pre['mean']} / std {pre['std']}; accuracy on {n_test} test images "
        "(no flip TTA). GPT: blocks' linears quantised, tied embedding fp32.\n\n"
        "| model | method | metric | value | change vs fp32 | size (KiB) | size ratio | "
        + " | ".join(f"latency b{b} (ms) | speed-up b{b}" for b in bs)
        + " | evaluated on |\n|---|---|---|---:|---:|---:|---:|"
        + "---:|---:|" * len(bs)
        + "---|\n"
    )
    body = "".join(
        f"| {r['model']} | {r['method']} | {r['metric']} | {r['value']:.4f} | {r['change']:+.4f} | "
        f"{r['bytes'] / 1024:.0f} | {r['size_ratio']:.2f} | "
        + " | ".join(f"{r[f'latency_b{b}_ms']:.1f} | x{r[f'speedup_b{b}']:.2f}" for b in bs)
        + f" | {r['n_eval']} |\n"
        for r in rows
    )
    return head + body


def _plot_sensitivity(ctx: RunContext, sens: dict[str, Any]) -> None:
    plt = pyplot()
    names = list(sens["layers"])
    drop = [100 * sens["layers"][n]["accuracy_drop"] for n in names]
    kl = [sens["layers"][n]["kl"] for n in names]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    axes[0].bar(range(len(names)), drop, color="tab:red", label="accuracy drop")
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_ylabel("accuracy drop (points)")
    axes[1].bar(range(len(names)), kl, color="tab:blue", label="KL(fp32 ‖ int8 layer)")
    axes[1].set_ylabel("KL of predictions (nats)")
    axes[1].set_yscale("log")
    axes[1].set_xticks(range(len(names)), names, rotation=75, fontsize=7)
    axes[1].set_xlabel("layer quantised alone (weights int8 per channel, input uint8 per tensor)")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        f"ResNet-20 per-layer int8 sensitivity ({sens['n_images']} CIFAR-10 test images, "
        f"fp32 accuracy {sens['fp32_accuracy']:.4f})"
    )
    fig.tight_layout()
    ctx.savefig(fig, "sensitivity.png")


def _plot_tradeoff(ctx: RunContext, rows: list[dict[str, Any]]) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, model in zip(axes, ("GPT", "ResNet-20"), strict=True):
        sub = [r for r in rows if r["model"] == model]
        for r in sub:
            ax.scatter(r["bytes"] / 2**20, r["value"], s=50, label=r["method"])
        ax.set_xlabel("size (MiB, serialised state_dict)")
        ax.set_ylabel(sub[0]["metric"])
        ax.set_title(f"{model}: quality vs size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.savefig(fig, "quality_vs_size.png")


def _metrics(rows: list[dict[str, Any]], sens: dict[str, Any]) -> dict[str, Any]:
    key = {
        "fp32": "fp32",
        "dynamic int8 (torch)": "dynamic",
        "weight-only int8 (scratch)": "weight_only",
        "static int8 (FX, calibrated)": "static",
        "QAT int8 (FX)": "qat",
    }
    out: dict[str, Any] = {}
    for r in rows:
        prefix = f"{'gpt' if r['model'] == 'GPT' else 'resnet'}_{key[r['method']]}"
        short = "ppl" if r["model"] == "GPT" else "acc"
        out[f"{prefix}_{short}"] = r["value"]
        out[f"{prefix}_{short}_change"] = r["change"]
        out[f"{prefix}_size_ratio"] = r["size_ratio"]
        out.update(
            {f"{prefix}_{k}": v for k, v in r.items() if k.startswith(("latency_", "speedup_"))}
        )
    worst = max(sens["layers"], key=lambda n: sens["layers"][n]["kl"])
    out["most_sensitive_layer"] = worst
    out["most_sensitive_layer_kl"] = sens["layers"][worst]["kl"]
    return out
