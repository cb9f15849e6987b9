"""A small synchronous gRPC client for ``serving.proto``: what the tests, scripts and the README
use.

::

    with ServingClient("127.0.0.1:50051", api_key=key) as client:
        for piece in client.generate("Once upon a time", max_tokens=40, seed=0):
            print(piece, end="", flush=True)
        reply = client.classify(image=open("cat.png", "rb").read())   # or array=np.ndarray
        client.health()

A refused call raises ``grpc.RpcError``; ``e.code()`` is the status (``INVALID_ARGUMENT``,
``UNAUTHENTICATED``, ...) and ``e.details()`` the server's message naming the field.
``python -m layer6_serving.grpc.client generate "Once upon a time"`` does the same from a shell.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from layer6_serving.grpc import serving_pb2 as pb
from layer6_serving.grpc import serving_pb2_grpc as pb_grpc


class ServingClient:
    """Calls of ``dlstack.serving.v1.Serving`` on ``target`` (``host:port``)."""

    def __init__(self, target: str, api_key: str | None = None, timeout: float | None = 60.0):
        self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.ServingStub(self.channel)
        self.metadata = (("x-api-key", api_key),) if api_key else ()
        self.timeout = timeout
        self.last_done: pb.Token | None = None  # the final message of the last generate

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def generate_tokens(
        self, prompt: str, max_tokens: int | None = None, **sampling: Any
    ) -> Iterator[pb.Token]:
        """Every ``Token`` message of the stream, the final ``done`` one included. ``sampling``:
        temperature, top_k, top_p, seed (left out: the server's defaults)."""
        fields = {k: v for k, v in sampling.items() if v is not None}
        if max_tokens is not None:
            fields["max_tokens"] = max_tokens
        request = pb.GenerateRequest(prompt=prompt, **fields)
        yield from self.stub.Generate(request, timeout=self.timeout, metadata=self.metadata)

    def generate(
        self, prompt: str, max_tokens: int | None = None, **sampling: Any
    ) -> Iterator[str]:
        """The text pieces, one per generated token; ``last_done`` then holds the counts."""
        for token in self.generate_tokens(prompt, max_tokens, **sampling):
            if token.done:
                self.last_done = token
            else:
                yield token.text

    def classify(
        self, image: bytes | None = None, array: np.ndarray | None = None
    ) -> dict[str, Any]:
        """label, class_name, probabilities, model, version of one image: PNG/JPEG ``image``
        bytes, or an ``array`` (3, 32, 32) / (32, 32, 3) in [0, 1]."""
        if (image is None) == (array is None):
            raise ValueError("give exactly one of image (bytes) or array")
        if image is not None:
            request = pb.ClassifyRequest(image=image)
        else:
            a = np.asarray(array, dtype=np.float32)
            request = pb.ClassifyRequest(
                array=pb.FloatArray(values=a.ravel().tolist(), shape=list(a.shape))
            )
        reply = self.stub.Classify(request, timeout=self.timeout, metadata=self.metadata)
        return {
            "label": reply.label,
            "class_name": reply.class_name,
            "probabilities": list(reply.probabilities),
            "model": reply.model,
            "version": reply.version,
        }

    def health(self) -> dict[str, Any]:
        """live, ready and the loaded models (needs no API key)."""
        reply = self.stub.Health(pb.HealthRequest(), timeout=self.timeout)
        models = [
            {"kind": m.kind, "name": m.name, "version": m.version, "backend": m.backend}
            for m in reply.models
        ]
        return {"live": reply.live, "ready": reply.ready, "models": models}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m layer6_serving.grpc.client", description="Call the dlstack gRPC server."
    )
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--api-key", default=None)
    sub = p.add_subparsers(dest="call", required=True)
    g = sub.add_parser("generate", help="stream a continuation")
    g.add_argument("prompt")
    g.add_argument("--max-tokens", type=int, default=None)
    g.add_argument("--temperature", type=float, default=None)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=None)
    c = sub.add_parser("classify", help="classify a PNG/JPEG file")
    c.add_argument("image", type=Path)
    sub.add_parser("health", help="liveness, readiness, models")
    args = p.parse_args(argv)
    with ServingClient(args.target, args.api_key) as client:
        try:
            if args.call == "generate":
                for piece in client.generate(
                    args.prompt,
                    args.max_tokens,
                    temperature=args.temperature,
                    top_k=args.top_k,
                    top_p=args.top_p,
                    seed=args.seed,
                ):
                    print(piece, end="", flush=True)
                print()
            elif args.call == "classify":
                print(json.dumps(client.classify(image=args.image.read_bytes())))
            else:
                print(json.dumps(client.health()))
        except grpc.RpcError as e:
            print(f"{e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
