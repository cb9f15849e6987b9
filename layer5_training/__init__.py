"""Layer 5: how models converge, and how to keep them stable, at one process and at many.

- :mod:`~layer5_training.optim`: the optimisers written out as ``torch.optim.Optimizer``
  subclasses (SGD, Adam, AdamW, RMSprop, Adagrad, Lion, Adafactor), the learning-rate schedules,
  gradient clipping and a dynamic loss scaler for fp16, each proven equal to PyTorch's own.
- :mod:`~layer5_training.distributed`: data parallelism with ``torchrun``: DDP, FSDP2, a ZeRO-1
  written here, gradient accumulation, and a communication model of the speed-up.
- :mod:`~layer5_training.tuning`: hyper-parameter search with Optuna over layer 3's Hydra
  pipeline, pruned by the trainer's intermediate validation, shared through SQLite.

Everything trains through layer 3's trainer on the models of layers 3 and 4.
``python -m layer5_training`` (``make layer5``) runs the deliverables.
"""
