"""Reproducibility: the same seed and config give the same numbers, and a resumed run continues the
very random stream it stopped in.

A training run draws randomness from four places: Python's ``random``, numpy's global generator,
torch's generator (per device), and the DataLoader worker processes, each of which starts with
its own copies of the first three. ``seed_everything(seed)`` seeds the first three;
``seed_worker`` (the DataLoader's ``worker_init_fn``) derives each worker's Python/numpy seeds
from the per-worker torch seed that the DataLoader already derives from its own seeded
``torch.Generator`` — so the workers' streams are a function of the one seed too.

Resuming needs the *state* of each stream, not its seed: ``rng_state()`` captures all of them as
plain JSON (bytes as base64) and ``set_rng_state`` puts them back, so the run after a resume
draws exactly the numbers the uninterrupted run would have drawn.
"""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch

from layer0_math.lab import seed_everything_numpy


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python, numpy and torch (CPU and every CUDA device) with ``seed``.

    ``deterministic=True`` also asks torch for deterministic kernels (slower on a GPU; a kernel
    without a deterministic version then raises instead of silently varying).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed_everything_numpy(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` for DataLoader: seed a worker's Python and numpy from its torch seed.

    torch sets each worker's seed to ``base_seed + worker_id`` where ``base_seed`` comes from the
    loader's generator; Python and numpy would otherwise be copies of the parent's state, and
    every worker would draw the same "random" numbers.
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)  # noqa: NPY002 (the global stream is what gets seeded)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (for shuffling and loader worker seeds)."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state() -> dict[str, Any]:
    """Every global random stream's state, as JSON-serialisable data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {
            "name": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _b64(torch.get_rng_state()),
        "cuda": [],
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise ValueError(f"RNG state is missing {sorted(missing)}; got keys {sorted(state)}")
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            npy["name"],
            np.asarray(npy["keys"], dtype=np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(_unb64(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])
