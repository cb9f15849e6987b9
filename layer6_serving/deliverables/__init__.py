"""Layer 6's deliverables, in run order: ``python -m layer6_serving [--preset quick|full]``.

``export_models`` (layer 4's GPT, DDPM denoiser and ResNet to ONNX and TorchScript, parity with
eager PyTorch, int8, registered in the model registry), ``load_test`` (the service under a
bounded load on loopback: latency percentiles, throughput, errors; ONNX Runtime vs eager,
batching on vs off; utilisation), ``retraining_loop`` (drift detected on served inputs, a model
retrained, compared and registered, hot-reloaded by the running server without a failed request).
"""

from layer6_serving.deliverables.export_models import export_models
from layer6_serving.deliverables.load_test import load_test
from layer6_serving.deliverables.retraining_loop import retraining_loop

__all__ = ["export_models", "load_test", "retraining_loop"]
