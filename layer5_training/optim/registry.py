"""The optimisers of this package by name, and one constructor that configs can point at.

``make_optimizer("adamw", model.parameters(), lr=3e-4, weight_decay=0.1)`` builds
:class:`~layer5_training.optim.adam.AdamW`; a Hydra config names
``layer5_training.optim.registry.make_optimizer`` with ``_partial_: true`` and ``name: ...``, so
one YAML switches between all seven by changing ``name``.
"""

from __future__ import annotations

from typing import Any

import torch

from layer5_training.optim.adafactor import Adafactor
from layer5_training.optim.adagrad import Adagrad
from layer5_training.optim.adam import Adam, AdamW
from layer5_training.optim.lion import Lion
from layer5_training.optim.rmsprop import RMSprop
from layer5_training.optim.sgd import SGD

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": SGD,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
    "adagrad": Adagrad,
    "lion": Lion,
    "adafactor": Adafactor,
}


def make_optimizer(name: str, params: Any, *, lr: float, **hyper: Any) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params`` with rate ``lr``; ``hyper`` goes to its class."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, lr=lr, **hyper)


def named_optimizer(params: Any, *, name: str, lr: float, **hyper: Any) -> torch.optim.Optimizer:
    """:func:`make_optimizer` with the parameters first, for a Hydra ``_partial_`` config
    (the pipeline passes the parameters positionally)."""
    return make_optimizer(name, params, lr=lr, **hyper)
