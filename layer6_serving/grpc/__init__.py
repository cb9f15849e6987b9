"""gRPC beside REST: the same generate (server-streaming tokens), classify and health calls over
HTTP/2 and protocol buffers, answered by the same :class:`~layer6_serving.service.core.ServingCore`
as the FastAPI app, so the two transports cannot disagree.

- ``serving.proto``: the contract; ``serving_pb2.py``/``serving_pb2_grpc.py`` (+ ``.pyi``) are
  generated from it by ``make proto`` and checked in (a test regenerates them and compares);
- :mod:`~layer6_serving.grpc.server`: ``python -m layer6_serving grpc-serve``; errors are status
  codes (INVALID_ARGUMENT naming the field, UNAUTHENTICATED, RESOURCE_EXHAUSTED,
  DEADLINE_EXCEEDED);
- :mod:`~layer6_serving.grpc.client`: a small client for tests, scripts and the README.
"""
