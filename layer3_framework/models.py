"""Models the pipeline's configs name where a port's own signature does not fit a config.

A ``model`` config is the keyword arguments of its ``_target_``; the keys set to ``???`` are
supplied by the data module (:meth:`layer3_framework.data.DataModule.model_kwargs`). Most ports
take those sizes directly (``CifarCNN(in_channels, image_size, num_classes, widths)``,
``CharLM(vocab_size, ...)``); :class:`layer3_framework.ports.MLP` takes one list of layer sizes,
``[in_features, *hidden, num_classes]``, so its config names :class:`MLPClassifier`, the same
network (same parameter names) built from named sizes. A checkpoint's ``model_spec`` rebuilds a
class with its keyword arguments, so every target here is an ``nn.Module`` class.
"""

from __future__ import annotations

from collections.abc import Sequence

from layer3_framework.ports import MLP


class MLPClassifier(MLP):
    """:class:`~layer3_framework.ports.MLP` from flattened inputs of ``in_features`` to
    ``num_classes`` logits, with hidden layers of the sizes ``hidden``."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
    ) -> None:
        super().__init__([in_features, *hidden, num_classes], activation=activation)
