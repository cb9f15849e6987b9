"""Checkpoints: everything needed to continue a run as if it had never stopped, in two files.

``step_00000200.safetensors`` holds every *tensor* — the model's parameters and buffers and the
optimizer's per-parameter state (momentum buffers, Adam moments) — in the safetensors format: a
JSON header of names, dtypes, shapes and offsets followed by raw bytes. Loading it executes no
code, unlike a pickle, which is why ``torch.load`` is never used here (and would only ever be
used with ``weights_only=True``).

``step_00000200.safetensors.json`` (the *sidecar*) holds everything that is not a tensor: the step,
the optimizer's hyper-parameters and the scheduler's and grad-scaler's state, the state of every
random generator (Python, numpy, torch; bytes as base64), the data position (sampler epoch and
offset) and the resolved config. Nested state is stored as JSON in which each tensor is replaced
by ``{"__tensor__": "<name in the safetensors file>"}``.

Both files are written atomically (temporary file, fsync, ``os.replace``) by
:func:`layer0_math.lab.save_arrays`, the project's one array writer, weights first and sidecar
last: a checkpoint *exists* once its sidecar does, so a crash mid-write leaves the previous
checkpoint as the latest complete one.

**Self-describing.** The sidecar's ``model_spec`` says how to rebuild the model with no dataset on
disk: ``{"target": "layer3_framework.ports.CifarCNN", "kwargs": {...constructor arguments...},
"preprocessing": {...normalisation statistics, class names, vocabulary...}, "state_prefix":
"model"}`` (``state_prefix``: where the model's weights sit inside the checkpointed task).
:func:`load_model` imports ``target`` (only from a dlstack layer package or torch: loading a
checkpoint must not import arbitrary code), constructs it, loads the weights strictly and
attaches the spec as ``model.dlstack_spec``.

**Damage is named, not a traceback.** A truncated weights file, a sidecar that is not JSON or
lacks a field, or weights that do not fit the model raise :class:`CheckpointError` naming the file
and the fault; :func:`first_good_checkpoint` falls back to the previous good checkpoint of a
folder, warning which files it skipped and why. :func:`check_resume_config` decides which config
changes a resumed run may take (:data:`RESUMABLE_CHANGES`) and raises :class:`ResumeError`
naming every other changed key, old → new.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from layer0_math.lab import read_arrays, save_arrays

FORMAT = "dlstack-checkpoint/1"
_REQUIRED = ("step", "model", "rng", "data", "config", "extra")
# dotted config keys a resumed run may change: they alter how the run is watched, not what it
# computes (eval_batch_size and num_workers change batching of evaluation and loading only)
RESUMABLE_CHANGES = (
    "trainer.max_steps",
    "trainer.log_every",
    "trainer.eval_every",
    "trainer.eval_batches",
    "trainer.ckpt_every",
    "trainer.keep_checkpoints",
    "trainer.progress",
    "trainer.compile",
    "logger.*",
    "data.num_workers",
    "data.eval_batch_size",
    "device",
    "resume",
    "name",
)
_LAYER_PACKAGE = re.compile(r"^layer\d+_[a-z0-9_]+$")
_STEP_FILE = re.compile(r"^step_(\d+)\.safetensors$")
# dtypes numpy cannot hold are stored bit-for-bit as same-width integers
_BITCAST = {torch.bfloat16: torch.int16}


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested structure by references, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        # int keys (optimizer state is keyed by parameter index) survive JSON as pairs
        return {"__items__": [[k, _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(
        f"cannot checkpoint {prefix}: {type(obj).__name__} is not a tensor or JSON value"
    )


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_split`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__items__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__items__"]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def _to_numpy(t: torch.Tensor, name: str, bitcast: dict[str, str]) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype in _BITCAST:
        bitcast[name] = str(t.dtype).removeprefix("torch.")
        t = t.view(_BITCAST[t.dtype])
    return t.contiguous().numpy().copy()


class CheckpointError(RuntimeError):
    """A checkpoint is damaged or does not fit what it is loaded into."""


class IncompleteCheckpointError(CheckpointError, FileNotFoundError):
    """A checkpoint's weights or sidecar is missing (e.g. a crash between the two writes)."""


class ResumeError(ValueError):
    """A run cannot be resumed as asked (a changed config key, or the run is finished)."""


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.safetensors"


def _split_optional(obj: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """The state of one stateful object, or of a ``{name: object}`` mapping of them."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return {k: _split(v.state_dict(), f"{name}.{k}", tensors) for k, v in obj.items()}
    return _split(obj.state_dict(), name, tensors)


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    step: int,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    rng: dict[str, Any] | None = None,
    data_state: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    model_spec: dict[str, Any] | None = None,
    states: dict[str, Any] | None = None,
) -> Path:
    """Write model (+ optimizer, scheduler, scaler) state and run state to ``path`` + sidecar.

    ``optimizer`` and ``scheduler`` are one object or a ``{name: object}`` mapping; ``states``
    is any further nested state holding tensors (e.g. an EMA's averaged weights);
    ``model_spec`` (validated by :func:`validate_model_spec`) makes the checkpoint rebuildable by
    :func:`load_model`.
    """
    tensors: dict[str, torch.Tensor] = {}
    _split(dict(model.state_dict()), "model", tensors)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "step": step,
        "model": sorted(k.removeprefix("model.") for k in tensors),
        "model_spec": validate_model_spec(model_spec) if model_spec is not None else None,
        "optimizer": _split_optional(optimizer, "optimizer", tensors),
        "scheduler": _split_optional(scheduler, "scheduler", tensors),
        "scaler": _split_optional(scaler, "scaler", tensors),
        "states": _split(states or {}, "states", tensors),
        "rng": rng,
        "data": data_state,
        "config": config,
        "extra": extra or {},
    }
    bitcast: dict[str, str] = {}
    arrays = {k: _to_numpy(v, k, bitcast) for k, v in tensors.items()}
    meta["bitcast"] = bitcast
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return save_arrays(Path(path), arrays, meta)


def _read_files(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The raw arrays and sidecar, every kind of damage turned into a :class:`CheckpointError`."""
    sidecar = path.with_name(path.name + ".json")
    if not path.exists() or not sidecar.exists():
        raise IncompleteCheckpointError(
            f"checkpoint {path} is incomplete or missing (need {path.name} and {sidecar.name})"
        )
    try:
        arrays, meta = read_arrays(path)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{sidecar.name} is not valid JSON ({e})") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{sidecar.name} has format {found!r}, expected {FORMAT!r}")
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{sidecar.name} lacks the fields {missing}")
    return arrays, meta


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (CPU) and sidecar of a checkpoint, with a clear error if it is incomplete or
    damaged (:class:`CheckpointError`)."""
    arrays, meta = _read_files(Path(path))
    bitcast = meta.get("bitcast", {})
    tensors = {}
    for name, arr in arrays.items():
        t = torch.from_numpy(arr)
        if name in bitcast:
            t = t.view(getattr(torch, bitcast[name]))
        tensors[name] = t
    listed = {f"model.{k}" for k in meta["model"]}
    if not listed <= set(tensors):
        lost = sorted(k.removeprefix("model.") for k in listed - set(tensors))
        raise CheckpointError(f"{Path(path).name} lacks the model tensors {lost[:5]}")
    return tensors, meta


def check_state_fits(state: dict[str, torch.Tensor], module: torch.nn.Module, source: str) -> None:
    """Raise :class:`CheckpointError` naming the keys and shapes where ``state`` does not fit
    ``module`` (instead of torch's wall of text, and before anything is loaded)."""
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(
            f"{source} does not fit the model (size mismatch or other keys: was the model "
            f"config changed?): {'; '.join(problems[:5])}{more}"
        )


def _load_stateful(obj: Any, state: Any, name: str, path: Path) -> None:
    if obj is None:
        return
    if state is None:
        raise CheckpointError(f"checkpoint {path} holds no {name} state but a {name} was given")
    pairs = obj.items() if isinstance(obj, Mapping) else [(None, obj)]
    for key, item in pairs:
        if key is not None and key not in state:
            raise CheckpointError(f"checkpoint {path} holds no {name} {key!r} (has {list(state)})")
        try:
            item.load_state_dict(state if key is None else state[key])
        except (ValueError, KeyError, RuntimeError) as e:
            label = name if key is None else f"{name} {key!r}"
            raise CheckpointError(
                f"checkpoint {path}: the {label} state does not fit: {e}"
            ) from None


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Load a checkpoint into the given objects (strictly: every key must match); return the
    sidecar (step, rng, data position, config, extra; ``states`` with its tensors joined back)
    for the caller to restore the rest. ``check(sidecar)`` runs before anything is loaded."""
    path = Path(path)
    tensors, meta = read_checkpoint(path)
    if check is not None:
        check({**meta, "states": _join(meta.get("states") or {}, tensors)})
    model_state = {
        k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")
    }
    check_state_fits(model_state, model, str(path))
    model.load_state_dict(model_state, strict=True)
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        _load_stateful(
            obj, None if meta.get(name) is None else _join(meta[name], tensors), name, path
        )
    return {**meta, "states": _join(meta.get("states") or {}, tensors)}


def _candidates(directory: Path) -> list[tuple[int, Path]]:
    """Every ``step_*.safetensors`` in ``directory`` (complete or not), oldest first."""
    found = []
    for p in Path(directory).glob("step_*.safetensors"):
        m = _STEP_FILE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (weights and sidecar present) in ``directory``, oldest first."""
    return [(s, p) for s, p in _candidates(directory) if p.with_name(p.name + ".json").exists()]


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def first_good_checkpoint(source: Path, load: Callable[[Path], Any]) -> tuple[Path, Any]:
    """``(path, load(path))`` for the newest checkpoint ``load`` accepts.

    ``source`` is a checkpoint file (no fallback: it was asked for) or a folder of them, tried
    newest first: a file ``load`` rejects with :class:`CheckpointError` is skipped with a warning
    saying why; if none is good, the error lists each file and why. Other errors (a
    :class:`ResumeError`) propagate at once: they are about the request, not the file.
    """
    source = Path(source)
    if not source.is_dir():
        return source, load(source)
    skipped: list[str] = []
    for _, path in reversed(_candidates(source)):
        try:
            result = load(path)
        except CheckpointError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        if skipped:
            warnings.warn(
                f"skipped damaged checkpoints, using {path.name}: " + " | ".join(skipped),
                stacklevel=2,
            )
        return path, result
    if not skipped:
        raise IncompleteCheckpointError(f"no checkpoint in {source}")
    raise CheckpointError(f"no good checkpoint in {source}: " + " | ".join(skipped))


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (sidecar first, then weights)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for _, p in list_checkpoints(directory)[:-keep]:
        p.with_name(p.name + ".json").unlink()
        p.unlink()


# ----------------------------------------------------------------------------- resume policy


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves)."""
    flat: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            flat.update(flatten(v, f"{key}."))
        else:
            flat[key] = v
    return flat


def check_resume_config(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The changes from ``old`` (the checkpoint's config) to ``new`` that a resume may take,
    as ``{dotted key: [old, new]}``; any other change raises :class:`ResumeError` naming it."""
    before, after = flatten(old), flatten(new)
    changed = {
        k: [before.get(k), after.get(k)]
        for k in sorted(set(before) | set(after))
        if before.get(k) != after.get(k)
    }
    refused = {
        k: v
        for k, v in changed.items()
        if not any(fnmatch.fnmatchcase(k, pattern) for pattern in RESUMABLE_CHANGES)
    }
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ResumeError(
            f"cannot resume with a changed config: {listed}. A resumed run continues the same "
            f"optimisation; only {', '.join(RESUMABLE_CHANGES)} may change. Start a new run "
            "(or fine-tune from the checkpoint) to change the others."
        )
    return changed


# ----------------------------------------------------------------------------- model specs


def validate_model_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A model spec as stored: ``target`` (an importable class path inside a dlstack layer or
    torch), ``kwargs`` and ``preprocessing`` (JSON objects) and ``state_prefix``."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("target"), str):
        raise ValueError(f"model_spec must be a dict with a 'target' class path, got {spec!r}")
    unknown = set(spec) - {"target", "kwargs", "preprocessing", "state_prefix"}
    if unknown:
        raise ValueError(f"model_spec has unknown keys {sorted(unknown)}")
    out = {
        "target": spec["target"],
        "kwargs": dict(spec.get("kwargs") or {}),
        "preprocessing": dict(spec.get("preprocessing") or {}),
        "state_prefix": str(spec.get("state_prefix", "")),
    }
    _check_target(out["target"])
    try:
        json.dumps(out)
    except TypeError as e:
        raise ValueError(f"model_spec must be JSON-serialisable: {e}") from None
    return out


def _check_target(target: str) -> None:
    root = target.split(".", 1)[0]
    if "." not in target or not (root == "torch" or _LAYER_PACKAGE.match(root)):
        raise ValueError(
            f"model_spec target {target!r} is not a class inside a dlstack layer package "
            "(layerN_name.module.Class) or torch; a checkpoint may not import other modules"
        )


def _import_target(target: str) -> type[torch.nn.Module]:
    _check_target(target)
    module_name, _, attr = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"model_spec target {target!r} cannot be imported: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise CheckpointError(f"model_spec target {target!r} is not an nn.Module class")
    return cls


def _model_weights(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str, weights: str
) -> dict[str, torch.Tensor]:
    """The model's state under ``prefix`` of the task: its own weights or an EMA's average."""
    if weights == "model":
        state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    elif weights == "ema":
        hooks = _join(meta.get("states") or {}, tensors).get("hooks", {})
        shadows = [h["shadow"] for h in hooks.values() if isinstance(h, dict) and "shadow" in h]
        if not shadows:
            raise CheckpointError("weights='ema' but the checkpoint holds no EMA state")
        state = shadows[0]
    else:
        raise ValueError(f"weights must be 'model' or 'ema', got {weights!r}")
    lead = f"{prefix}." if prefix else ""
    if lead and any(k.startswith(lead) for k in state):
        state = {k.removeprefix(lead): v for k, v in state.items() if k.startswith(lead)}
    return state


def load_model(
    path: Path, device: str | torch.device | None = None, *, weights: str = "model"
) -> torch.nn.Module:
    """Rebuild the model a checkpoint describes, with no dataset or config on disk.

    ``path`` is a checkpoint file, a folder of them, or a run folder holding ``checkpoints/``
    (newest good checkpoint). The model is constructed from the sidecar's ``model_spec``, its
    weights (``weights="ema"``: the EMA's average) loaded strictly, moved to ``device`` (default
    CPU), put in eval mode, and given the spec as ``model.dlstack_spec``.
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file or folder at {path}")

    def build(p: Path) -> torch.nn.Module:
        tensors, meta = read_checkpoint(p)
        spec = meta.get("model_spec")
        if not spec:
            raise ValueError(
                f"{p} has no model_spec: it was saved without Trainer(model_spec=...), so only "
                "code that builds the model itself can load it (load_checkpoint)"
            )
        model = _import_target(spec["target"])(**spec["kwargs"])
        state = _model_weights(tensors, meta, spec.get("state_prefix", ""), weights)
        check_state_fits(state, model, str(p))
        model.load_state_dict(state, strict=True)
        model.dlstack_spec = spec
        return model

    _, model = first_good_checkpoint(path, build)
    return model.to(torch.device(device) if device is not None else "cpu").eval()
