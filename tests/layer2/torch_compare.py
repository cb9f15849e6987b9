"""Layer-2 test helpers: compare our Tensors with PyTorch at float64 precision."""

from __future__ import annotations

import numpy as np
import torch

TOL = 1e-9


def assert_close(ours, theirs, name: str, tol: float = TOL) -> None:
    """Equal to `tol` (absolute and relative); the message says what differed and by how much."""
    a = np.asarray(
        ours.data if hasattr(ours, "data") and not isinstance(ours, np.ndarray) else ours
    )
    b = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert a.shape == b.shape, f"{name}: shape {a.shape}, torch {b.shape}"
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name}: max |diff| {diff:.3g}")


def copy_params(ours, theirs: torch.nn.Module) -> None:
    """Copy a torch module's parameters into ours by name (they must name the same things)."""
    mine = dict(ours.named_parameters())
    names = dict(theirs.named_parameters())
    assert sorted(mine) == sorted(names), (
        f"parameter names differ: {sorted(mine)} vs {sorted(names)}"
    )
    for name, p in names.items():
        assert mine[name].shape == tuple(p.shape), f"{name}: {mine[name].shape} vs {tuple(p.shape)}"
        mine[name].data[...] = p.detach().numpy()


def compare_grads(ours, theirs: torch.nn.Module, tol: float = TOL) -> None:
    """Every parameter gradient equal to torch's."""
    names = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert_close(p.grad, names[name].grad, f"grad {name}", tol)
