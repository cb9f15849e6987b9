"""TorchServe for the classifier: a handler (initialize → preprocess → inference → postprocess)
and the ``.mar`` archive that carries it with the registry's TorchScript graph.

- :mod:`~layer6_serving.torchserve.handler`: :class:`ClassifierHandler`, importable without
  TorchServe (``ts``) installed, unit-tested with a fake context the way TorchServe calls it;
- :mod:`~layer6_serving.torchserve.build_mar`: ``python -m layer6_serving build-mar`` packs it
  with ``torch-model-archiver``.
"""
