"""Layer 6: serving. Layer 4's trained models become a system people and programs can use.

- :mod:`~layer6_serving.export`: ONNX (``torch.onnx.export(dynamo=True)``) and TorchScript
  packages of the GPT (with a KV-cache step), the DDPM denoiser and the CIFAR-10 ResNet, each
  proven equal to eager PyTorch; ONNX Runtime int8 quantisation.
- :mod:`~layer6_serving.registry`: the model registry folder (name → versions → files and a
  manifest) and :mod:`~layer6_serving.runtime`: one interface over ONNX Runtime, TorchScript and
  eager PyTorch.
- :mod:`~layer6_serving.service`: the FastAPI app (generate with server-sent events, sample,
  classify, health, Prometheus metrics, a web page), micro-batching, validation, API keys;
  :mod:`~layer6_serving.grpc` beside it; a TorchServe handler; the container and Azure recipe
  in ``deploy/``.
- :mod:`~layer6_serving.monitoring`: served-input summaries and drift against the training data;
  the retraining loop that registers a new version only when it is no worse, hot-reloaded.

Models arrive as artifacts (layer 4's self-describing checkpoints in ``runs/``), never by running
layer 4's training code. ``python -m layer6_serving`` (``make layer6``) runs the deliverables;
``python -m layer6_serving serve`` (``make serve``) starts the service.
"""
