"""Layer 2's deliverables, in run order: ``python -m layer2_primitives [names...]``.

- ``cnn_cifar10``: CifarCNN trained on CIFAR-10 with crop/flip augmentation, evaluated on the full
  10,000-image test set; saves model.safetensors (parameters + batch-norm buffers, torch names).
- ``char_rnn``: character language models on tiny shakespeare with truncated BPTT (LSTM, then GRU
  and an Elman RNN on a smaller budget), validation loss in nats/char, generated samples.
- ``visualize``: the CNN's first-layer filters and feature maps (from the cnn_cifar10 artifact) and
  the attention pattern of a small attention model trained to reverse sequences.

Each is one module of orchestration, trained by layer 1's one loop
(:func:`layer1_autograd.training.fit`). Every config has ``blas_threads`` (default 1; applied by
layer0_math.lab while the deliverable runs): our matmuls are many and mid-sized, and under load a
second BLAS thread mostly waits at barriers for a core (a (32, 256) @ (256, 1024) product ran 17x
slower with 2 threads than 1).
"""

from layer2_primitives.deliverables.char_rnn import char_rnn
from layer2_primitives.deliverables.cnn_cifar10 import cnn_cifar10
from layer2_primitives.deliverables.visualize import visualize

__all__ = ["cnn_cifar10", "char_rnn", "visualize"]
