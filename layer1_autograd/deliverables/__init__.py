"""Layer 1 deliverables: ``python -m layer1_autograd`` (``make layer1``) runs them in this order.

- ``scalar_engine``: a ValueMLP (every multiply a graph node) learns two moons; decision boundary.
- ``mlp_manual_backprop``: the hand-derived MLP learns MNIST; its gradients equal the engine's.
- ``gradient_flow``: per-layer gradient norms for sigmoid/tanh/ReLU × initialisations in a deep MLP,
  a drawn computation graph, and filter-normalised loss-landscape slices.

Each is one module of orchestration (build, train with :func:`layer1_autograd.training.fit`,
measure, plot); the library code they use lives in the layer's concept modules.
"""

from layer1_autograd.deliverables.gradient_flow import gradient_flow
from layer1_autograd.deliverables.mlp_manual_backprop import mlp_manual_backprop
from layer1_autograd.deliverables.scalar_engine import scalar_engine

__all__ = ["scalar_engine", "mlp_manual_backprop", "gradient_flow"]
