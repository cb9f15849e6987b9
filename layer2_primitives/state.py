"""Full model state: parameters AND buffers (batch-norm running statistics), named like torch.

Layer 1's `Module.state_dict()` holds parameters only. Layers with non-trainable state (batch
norm) expose it through a `buffers()` method; `state_arrays` walks the module tree the same way
layer 1 names parameters ("features.1.weight") and adds those buffers
("features.1.running_mean"), so the dict matches `torch.nn.Module.state_dict()` key for key.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from layer1_autograd import Module


def named_modules(module: Module, prefix: str = "") -> Iterator[tuple[str, Module]]:
    """(dotted name, module) for `module` and every sub-module (attributes, lists of modules)."""
    yield prefix, module
    for name, value in vars(module).items():
        if isinstance(value, Module):
            yield from named_modules(value, f"{prefix}{name}.")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Module):
                    yield from named_modules(item, f"{prefix}{name}.{i}.")


def named_buffers(module: Module) -> dict[str, np.ndarray]:
    """Every buffer of the module tree, by dotted name (live arrays, not copies)."""
    out: dict[str, np.ndarray] = {}
    for prefix, sub in named_modules(module):
        buffers = getattr(sub, "buffers", None)
        if callable(buffers):
            out.update({f"{prefix}{k}": v for k, v in buffers().items()})
    return out


def state_arrays(module: Module) -> dict[str, np.ndarray]:
    """Copies of all parameters and buffers, keyed like torch's state_dict."""
    state = module.state_dict()
    state.update({k: np.array(v) for k, v in named_buffers(module).items()})
    return state


def load_state_arrays(module: Module, state: dict[str, np.ndarray]) -> None:
    """Inverse of `state_arrays`: copy parameters and buffers in; clear errors on mismatch.

    The batch counter `num_batches_tracked` is accepted as any one-element array.
    """
    buffers = named_buffers(module)
    missing = sorted(set(buffers) - set(state))
    if missing:
        raise KeyError(f"load_state_arrays: missing buffers {missing}")
    module.load_state_dict({k: v for k, v in state.items() if k not in buffers})
    for prefix, sub in named_modules(module):
        for name, buf in (getattr(sub, "buffers", dict)() or {}).items():
            value = np.asarray(state[f"{prefix}{name}"])
            if name == "num_batches_tracked":
                sub.num_batches_tracked = int(value.reshape(-1)[0])
            elif value.shape != buf.shape:
                raise ValueError(
                    f"load_state_arrays: '{prefix}{name}' has shape {value.shape}, "
                    f"buffer {buf.shape}"
                )
            else:
                buf[...] = value
