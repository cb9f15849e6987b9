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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from layer0_math.lab import read_arrays, save_arrays

FORMAT = "dlstack-checkpoint/1"
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


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.safetensors"


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    rng: dict[str, Any] | None = None,
    data_state: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write model (+ optimizer, scheduler, scaler) state and run state to ``path`` + sidecar."""
    tensors: dict[str, torch.Tensor] = {}
    _split(dict(model.state_dict()), "model", tensors)
    meta: dict[str, Any] = {
        "format": FORMAT,
        "step": step,
        "model": sorted(k.removeprefix("model.") for k in tensors),
        "optimizer": _split(optimizer.state_dict(), "optimizer", tensors) if optimizer else None,
        "scheduler": _split(scheduler.state_dict(), "scheduler", tensors) if scheduler else None,
        "scaler": _split(scaler.state_dict(), "scaler", tensors) if scaler else None,
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


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors (CPU) and sidecar of a checkpoint, with a clear error if it is incomplete."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    if not path.exists() or not sidecar.exists():
        raise FileNotFoundError(
            f"checkpoint {path} is incomplete or missing (need {path.name} and {sidecar.name})"
        )
    arrays, meta = read_arrays(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{sidecar} has format {meta.get('format')!r}, expected {FORMAT!r}")
    tensors = {}
    for name, arr in arrays.items():
        t = torch.from_numpy(arr)
        if name in meta.get("bitcast", {}):
            t = t.view(getattr(torch, meta["bitcast"][name]))
        tensors[name] = t
    return tensors, meta


def load_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
) -> dict[str, Any]:
    """Load a checkpoint into the given objects (strictly: every key must match); return the
    sidecar (step, rng, data position, config, extra) for the caller to restore the rest."""
    tensors, meta = read_checkpoint(path)
    model_state = {
        k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")
    }
    model.load_state_dict(model_state, strict=True)
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is None:
            continue
        if meta.get(name) is None:
            raise ValueError(f"checkpoint {path} holds no {name} state but a {name} was given")
        obj.load_state_dict(_join(meta[name], tensors))
    return meta


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (weights and sidecar present) in ``directory``, oldest first."""
    found = []
    for p in Path(directory).glob("step_*.safetensors"):
        m = _STEP_FILE.match(p.name)
        if m and p.with_name(p.name + ".json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (sidecar first, then weights)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    for _, p in list_checkpoints(directory)[:-keep]:
        p.with_name(p.name + ".json").unlink()
        p.unlink()
