"""The retraining loop: drift over a threshold → fine-tune → compare → register only if no worse.

    python -m layer6_serving retrain --registry runs/registry --model resnet \\
        --report http://127.0.0.1:8000/v1/drift --threshold 0.25 --shift dark --strength 0.5

1. **Read the drift report** (a file, or the service's ``GET /v1/drift``; the API key from
   ``DLSTACK_API_KEY`` / ``DLSTACK_API_KEY_FILE``): the model's largest PSI over its features.
   Below ``--threshold`` (PSI's conventional 0.25, "major shift") nothing is trained.
2. **Train a candidate through layer 3's pipeline** (:func:`layer3_framework.train.run`, so the
   job is a run folder with its own manifest, metrics and checkpoint): the model the current
   version's checkpoint describes (its ``model_spec``), warm-started from that checkpoint's
   weights (:func:`warm_start`, the task factory the config names), on CIFAR-10 training images
   of which a ``fraction`` carries the observed shift
   (:class:`~layer6_serving.monitoring.shift.ShiftedImageData`): the new distribution is
   learnt while the original one stays in the data, so it is not forgotten. The recipe is the
   layer-4 one at a fine-tuning rate: SGD-Nesterov with a short one-cycle schedule, crop + flip,
   the current model's label smoothing and flip TTA.
3. **Evaluate both on held-out data** the candidate never saw: ``n_eval`` CIFAR-10 *test*
   images as they are (``original``) and with the shift applied (``shifted``), each model as it
   is served (normalisation and TTA included).
4. **The rule: no worse on either.** The candidate is registered iff, on both held-out sets,
   ``accuracy_candidate ≥ accuracy_current − tolerance`` (default 0.005: below the standard
   error of an accuracy on a few thousand images, so noise does not block a real gain, and a
   real loss on the original data is never traded for a gain on the shifted data). Registering
   goes through :func:`~layer6_serving.export.export_bundle`, so the new version gets its ONNX
   and TorchScript files with parity checked, and its drift reference is the candidate's own
   training mix. A running server picks the version up by its reload poll (or
   ``POST /admin/reload``) and swaps atomically.

The decision (drift, both accuracies, the rule's verdict, the new version) is printed and
written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, open_dict

from layer0_math.lab import new_run_dir, write_json
from layer3_framework.checkpoint import latest_checkpoint, load_model, read_checkpoint
from layer3_framework.task import Classification
from layer3_framework.train import compose, run
from layer6_serving.export.wrappers import ClassifierGraph
from layer6_serving.monitoring.drift import PSI_MAJOR, reference_summary
from layer6_serving.monitoring.shift import SHIFTS, ShiftedImageData, shift_uint8
from layer6_serving.registry import ModelRegistry, default_root

LAYER = "layer6_serving"
SHIFTED_DATA = f"{ShiftedImageData.__module__}.{ShiftedImageData.__qualname__}"
EVAL_BATCH = 500


@dataclass
class RetrainOptions:
    """How the candidate is trained and judged (the command line's flags)."""

    threshold: float = PSI_MAJOR
    shift: str = "dark"
    strength: float = 0.5
    fraction: float = 0.5  # share of shifted images in the fine-tuning data
    steps: int = 300
    lr: float = 0.02
    batch_size: int = 128
    precision: str = "fp32"
    n_train: int | None = None  # None: all 50k training images
    n_eval: int = 2000  # held-out test images per set
    n_reference: int = 5000  # training images summarised for the new drift reference
    tolerance: float = 0.005
    source: str = "real"  # real | synthetic (tests)
    augment: bool = True  # crop + flip (off for synthetic data: its patterns are pixel-exact)
    cold_start: bool = False  # train from a fresh init instead of the current weights
    seed: int = 0
    progress: bool = True
    force: bool = False  # retrain whatever the drift


def warm_start(
    model: torch.nn.Module,
    init_from: str | None = None,
    label_smoothing: float = 0.0,
    flip_tta: bool = False,
) -> Classification:
    """The classification task over ``model`` with its weights first loaded from the checkpoint
    ``init_from`` (None: the model's fresh initialisation): fine-tuning as a task factory, so
    layer 3's pipeline runs it unchanged and the run's config records where the weights came
    from."""
    if init_from is not None:
        source = load_model(Path(init_from))
        model.load_state_dict(source.state_dict(), strict=True)
    return Classification(model, label_smoothing=label_smoothing, flip_tta=flip_tta)


# ---- 1. the drift report ---------------------------------------------------------------------


def read_report(source: str) -> dict[str, Any]:
    """A drift report from a JSON file or an ``http(s)://`` URL (the service's /v1/drift)."""
    if source.startswith(("http://", "https://")):
        import httpx

        from layer6_serving.service.security import load_api_key

        key = load_api_key(os.environ)
        headers = {"X-API-Key": key} if key else {}
        response = httpx.get(source, headers=headers, timeout=30)
        if response.status_code != 200:
            raise ValueError(f"GET {source} answered {response.status_code}: {response.text[:200]}")
        return response.json()
    path = Path(source)
    if not path.is_file():
        raise ValueError(
            f"no drift report at {path}: give a JSON file or the service's /v1/drift URL"
        )
    return json.loads(path.read_text())


def model_drift(report: dict[str, Any], model: str) -> tuple[float, str | None]:
    """The largest PSI in ``report`` for ``model`` and its feature. ``report`` is one monitor's
    report or the service's ``{model: report}`` mapping."""
    if "features" not in report:
        if model not in report:
            raise ValueError(f"the drift report has no model {model!r}; it has {sorted(report)}")
        report = report[model]
    return float(report.get("max_psi") or 0.0), report.get("max_feature")


# ---- 2. the candidate ------------------------------------------------------------------------


def _current(registry: ModelRegistry, name: str) -> tuple[int, dict, Path, dict]:
    version = registry.latest(name)
    manifest = registry.manifest(name, version)
    if manifest.get("kind") != "classifier":
        raise ValueError(f"retrain handles classifiers; {name!r} is a {manifest.get('kind')!r}")
    folder = registry.file(name, version, manifest["files"]["eager"]["checkpoint"])
    file = latest_checkpoint(folder)
    if file is None:
        raise ValueError(f"{name} v{version} has no checkpoint in {folder}")
    _, meta = read_checkpoint(file)
    return version, manifest, file, meta


def _data_node(pre: dict[str, Any], opts: RetrainOptions, fraction: float) -> dict[str, Any]:
    return {
        "_target_": SHIFTED_DATA,
        "name": "cifar10",
        "source": opts.source,
        "shape": list(pre["shape"]),
        "classes": list(pre["classes"]),
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "batch_size": opts.batch_size,
        "eval_batch_size": EVAL_BATCH,
        "augment": opts.augment,
        "crop_padding": 4 if opts.augment else 0,
        "flip": opts.augment,
        "n_train": opts.n_train,
        "n_test": opts.n_eval,
        "shift": opts.shift,
        "strength": opts.strength,
        "fraction": fraction,
    }


def training_config(checkpoint: Path, meta: dict[str, Any], opts: RetrainOptions) -> DictConfig:
    """Layer 3's config for the candidate: the checkpoint's model, shifted-mix data, warm start."""
    spec = meta["model_spec"]
    task = (meta.get("config") or {}).get("task") or {}
    cfg = compose(["optim=sgd", "logger=jsonl", f"trainer.max_steps={opts.steps}"])
    with open_dict(cfg):
        cfg.seed = opts.seed
        cfg.name = "retrain"
        cfg.model = {"_target_": spec["target"], **spec["kwargs"]}
        cfg.data = _data_node(spec["preprocessing"], opts, opts.fraction)
        cfg.task = {
            "_target_": f"{__name__}.warm_start",
            "_partial_": True,
            "init_from": None if opts.cold_start else str(checkpoint),
            "label_smoothing": float(task.get("label_smoothing", 0.0)),
            "flip_tta": bool(task.get("flip_tta", False)),
        }
        cfg.optim.lr = opts.lr
        cfg.trainer.log_every = max(1, min(50, opts.steps))
        cfg.trainer.precision = opts.precision
        cfg.trainer.keep_checkpoints = 1
    return cfg


# ---- 3. held-out evaluation ------------------------------------------------------------------


def held_out(pre: dict[str, Any], opts: RetrainOptions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``original`` and ``shifted`` held-out sets: uint8 test images (N, 3, H, W) and labels."""
    data = ShiftedImageData(
        **{k: v for k, v in _data_node(pre, opts, 0.0).items() if k != "_target_"}
    )
    data.n_train = 1  # only the test split is used
    test = data.setup(opts.seed).test
    images, labels = test.images.numpy(), test.labels.numpy()
    return {
        "original": (images, labels),
        "shifted": (shift_uint8(images, opts.shift, opts.strength), labels),
    }


def served(model: torch.nn.Module, pre: dict[str, Any], flip_tta: bool) -> ClassifierGraph:
    """The model as the service runs it: images in [0, 1] → normalised → logits (TTA baked in)."""
    return ClassifierGraph(model, pre["mean"], pre["std"], flip_tta).eval()


@torch.no_grad()
def predict(graph: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) of uint8 images (N, 3, H, W), in batches."""
    out = []
    for start in range(0, len(images), EVAL_BATCH):
        x = torch.from_numpy(images[start : start + EVAL_BATCH].astype(np.float32) / 255)
        out.append(torch.softmax(graph(x).float(), dim=-1).numpy())
    return np.concatenate(out)


def accuracies(graph: torch.nn.Module, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    return {k: float(np.mean(predict(graph, x).argmax(1) == y)) for k, (x, y) in sets.items()}


def decide(
    current: dict[str, float], candidate: dict[str, float], tolerance: float
) -> tuple[bool, str]:
    """The rule: register iff the candidate is no worse than the current model, within
    ``tolerance``, on every held-out set; the reason names the numbers."""
    worse = [k for k in current if candidate[k] < current[k] - tolerance]
    figures = ", ".join(f"{k} {current[k]:.4f} -> {candidate[k]:.4f}" for k in current)
    if worse:
        return (
            False,
            f"refused: worse on {', '.join(worse)} beyond tolerance {tolerance} ({figures})",
        )
    return (
        True,
        f"registered: no worse on any held-out set within tolerance {tolerance} ({figures})",
    )


# ---- the loop --------------------------------------------------------------------------------


def retrain(
    registry: ModelRegistry,
    name: str,
    report: dict[str, Any],
    opts: RetrainOptions,
    run_dir: Path | None = None,
    parent_id: str | None = None,
) -> dict[str, Any]:
    """Steps 1-4 of the module docstring; returns the decision (JSON-ready)."""
    max_psi, feature = model_drift(report, name)
    version, manifest, checkpoint, meta = _current(registry, name)
    decision: dict[str, Any] = {
        "model": name,
        "current_version": version,
        "drift": {"max_psi": max_psi, "feature": feature, "threshold": opts.threshold},
        "retrained": False,
        "registered": False,
        "new_version": None,
        "options": asdict(opts),
    }
    if max_psi < opts.threshold and not opts.force:
        decision["reason"] = (
            f"max PSI {max_psi:.4f} ({feature}) below {opts.threshold}: no retraining"
        )
        return decision
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(LAYER, "retrain")
    cfg = training_config(checkpoint, meta, opts)
    metrics = run(cfg, run_dir, progress=opts.progress, parent_id=parent_id)
    candidate = load_model(run_dir)
    sets = held_out(meta["model_spec"]["preprocessing"], opts)
    flip = bool(cfg.task.flip_tta)
    current_graph = served(load_model(checkpoint), manifest["preprocessing"], flip)
    acc = {
        "current": accuracies(current_graph, sets),
        "candidate": accuracies(
            served(candidate, candidate.dlstack_spec["preprocessing"], flip), sets
        ),
    }
    ok, reason = decide(acc["current"], acc["candidate"], opts.tolerance)
    decision.update(retrained=True, accuracy=acc, reason=reason, train_run=str(run_dir))
    decision["train_metrics"] = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    if ok:
        decision["new_version"] = _register(
            registry, name, run_dir, cfg, candidate, manifest, decision
        )
        decision["registered"] = True
    write_json(run_dir / "decision.json", decision)
    return decision


def _register(registry, name, run_dir, cfg, candidate, manifest, decision) -> int:
    """The candidate as a new version (export with parity), its reference its training mix."""
    from layer6_serving.export import export_bundle

    data = ShiftedImageData(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    train = data.setup(cfg.seed).train
    n = min(decision["options"]["n_reference"], len(train))
    images = train.images[:n].numpy()
    flip = bool(cfg.task.flip_tta)
    probs = predict(served(candidate, candidate.dlstack_spec["preprocessing"], flip), images)
    extra = {
        "reference": reference_summary(images, probs),
        "retrain": {k: decision[k] for k in ("current_version", "drift", "accuracy", "reason")},
    }
    return export_bundle(registry, name, run_dir, "classifier",
                         int8="onnx-int8" in manifest.get("files", {}),
                         real=images[:16].astype(np.float32) / 255, extra=extra)  # fmt: skip


# ---- the command line ------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    d = RetrainOptions()
    p = argparse.ArgumentParser(
        prog="python -m layer6_serving retrain", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--registry", type=Path, default=None, help="registry folder (default: runs/registry)"
    )
    p.add_argument("--model", default="resnet", help="registry name of the classifier")
    p.add_argument("--report", required=True, help="drift report: a JSON file or the /v1/drift URL")
    p.add_argument("--threshold", type=float, default=d.threshold)
    p.add_argument("--shift", choices=SHIFTS, default=d.shift)
    p.add_argument("--strength", type=float, default=d.strength)
    p.add_argument("--fraction", type=float, default=d.fraction)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision)
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-eval", type=int, default=d.n_eval)
    p.add_argument("--tolerance", type=float, default=d.tolerance)
    p.add_argument("--source", choices=("real", "synthetic"), default=d.source)
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no crop + flip")
    p.add_argument("--cold-start", action="store_true", help="train from a fresh init")
    p.add_argument("--force", action="store_true", help="retrain whatever the drift")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", type=Path, default=None, help="also write the decision JSON here")
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    fields = set(RetrainOptions.__dataclass_fields__)
    opts = RetrainOptions(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        registry = ModelRegistry(args.registry or default_root())
        decision = retrain(registry, args.model, read_report(args.report), opts)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(decision["reason"])
    if decision["registered"]:
        print(f"new version: {args.model} v{decision['new_version']}")
    if args.out is not None:
        write_json(args.out, decision)
    print(json.dumps({k: decision[k] for k in ("model", "retrained", "registered", "new_version")}))
    return 0
