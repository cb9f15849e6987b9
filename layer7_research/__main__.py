"""``python -m layer7_research [deliverables...]`` runs this layer's deliverables (layer0_math.lab);
``python -m layer7_research COMMAND ...`` runs one of the layer's commands (``--help`` on each)."""

from __future__ import annotations

import importlib
import sys

# command -> module whose ``main(argv) -> int`` runs it (imported only when asked for)
COMMANDS = {
    "new-experiment": "layer7_research.experiments.scaffold",
    "run-experiment": "layer7_research.experiments.run",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    from layer0_math.lab import cli
    from layer7_research import deliverables

    return cli(deliverables, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
