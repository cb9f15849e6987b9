"""Layer 1: automatic differentiation, from one scalar to numpy tensors.

- :class:`Value` (value.py): a micrograd-style scalar engine; :mod:`value_nn` builds neurons on it.
- :class:`Tensor` (tensor.py): a reverse-mode engine over numpy arrays that layer 2 builds on;
  :mod:`functional` (as ``F``) holds fused ops, :mod:`nn` holds Module/Linear/MLP/SGD.
- :mod:`manual_mlp`: an MLP whose backward pass is derived and written by hand.
- :mod:`training`: the one scratch-engine training loop (``fit``), LR schedules, clipping, and
  the one reaction to a non-finite loss (``NonFiniteLossError``).
- :mod:`gradient_flow`, :mod:`landscape`, :mod:`gradcheck`, :mod:`mnist`: what the deliverables
  (``deliverables/``, one module each) measure and train on.
"""

from layer1_autograd import functional
from layer1_autograd import functional as F
from layer1_autograd.nn import MLP, SGD, Linear, Module
from layer1_autograd.tensor import Tensor, concatenate, is_grad_enabled, no_grad, stack, unbroadcast
from layer1_autograd.value import Value
from layer1_autograd.value_nn import ValueLayer, ValueMLP, ValueNeuron, hinge_loss

__all__ = [
    "F",
    "MLP",
    "SGD",
    "Linear",
    "Module",
    "Tensor",
    "Value",
    "ValueLayer",
    "ValueMLP",
    "ValueNeuron",
    "concatenate",
    "functional",
    "hinge_loss",
    "is_grad_enabled",
    "no_grad",
    "stack",
    "unbroadcast",
]
