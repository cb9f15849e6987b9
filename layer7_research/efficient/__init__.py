"""Efficient models: int8 quantisation and knowledge distillation.

- :mod:`~layer7_research.efficient.quantizer`: affine quantisation from scratch (symmetric and
  asymmetric, per tensor and per channel, observers, fake-quant with the straight-through
  estimator), checked against ``torch.ao.quantization``.
- :mod:`~layer7_research.efficient.ptq`: post-training quantisation: dynamic int8 linears,
  weight-only int8 from the scratch quantiser, static int8 with calibration (FX graph mode),
  per-layer sensitivity; model size and CPU latency.
- :mod:`~layer7_research.efficient.qat`: quantisation-aware training (fake-quant in the graph,
  a short fine-tune with layer 3's trainer, then conversion to int8).
- :mod:`~layer7_research.efficient.distill`: Hinton et al.'s soft-target loss with temperature
  and the T² factor, and the distillation task for layer 3's trainer.
"""
