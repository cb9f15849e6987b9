"""The service: a FastAPI app over a transport-free serving core.

- :mod:`~layer6_serving.service.settings`: every knob, from ``DLSTACK_*`` variables and the CLI.
- :mod:`~layer6_serving.service.core`: :class:`ServingCore` (model slots with atomic hot swap,
  micro-batching, concurrency limits, timeouts), shared by REST and gRPC.
- :mod:`~layer6_serving.service.batching`: :class:`MicroBatcher` and :class:`ConcurrencyLimit`.
- :mod:`~layer6_serving.service.app`: :func:`create_app`: routes, validation, API key, CORS,
  body limits, request ids, the JSON 500.
- :mod:`~layer6_serving.service.schemas`, :mod:`~layer6_serving.service.images`,
  :mod:`~layer6_serving.service.security`, :mod:`~layer6_serving.service.metrics`.
- :mod:`~layer6_serving.service.cli`: ``python -m layer6_serving serve``; ``static/``: the page.
"""

from layer6_serving.service.app import create_app
from layer6_serving.service.batching import ConcurrencyLimit, MicroBatcher, QueueFull
from layer6_serving.service.core import ModelUnavailable, RequestTimeout, ServingCore
from layer6_serving.service.metrics import ServiceMetrics
from layer6_serving.service.schemas import FieldError
from layer6_serving.service.settings import Settings

__all__ = ["ConcurrencyLimit", "FieldError", "MicroBatcher", "ModelUnavailable", "QueueFull",
           "RequestTimeout", "ServiceMetrics", "ServingCore", "Settings", "create_app"]  # fmt: skip
