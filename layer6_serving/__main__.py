"""``python -m layer6_serving [deliverables...]`` runs this layer's deliverables (layer0_math.lab);
``python -m layer6_serving COMMAND ...`` runs one of the layer's commands (``--help`` on each)."""

from __future__ import annotations

import importlib
import sys

# command -> module whose ``main(argv) -> int`` runs it (imported only when asked for)
COMMANDS = {
    "serve": "layer6_serving.service.cli",
    "grpc-serve": "layer6_serving.grpc.server",
    "export": "layer6_serving.export.cli",
    "retrain": "layer6_serving.retrain",
    "loadgen": "layer6_serving.loadgen",
    "build-mar": "layer6_serving.torchserve.build_mar",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    from layer0_math.lab import cli
    from layer6_serving import deliverables

    return cli(deliverables, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
