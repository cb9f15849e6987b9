"""``python -m layer8_meta [deliverables...]`` runs this layer's deliverables (layer0_math.lab);
``python -m layer8_meta COMMAND ...`` runs one of the workspace's commands (``--help`` on each)."""

from __future__ import annotations

import importlib
import sys

# command -> module whose ``main(argv) -> int`` runs it (imported only when asked for)
COMMANDS = {
    "runs": "layer8_meta.registry.cli",
    "show": "layer8_meta.registry.cli",
    "compare": "layer8_meta.registry.cli",
    "best": "layer8_meta.registry.cli",
    "index": "layer8_meta.registry.cli",
    "reproduce": "layer8_meta.reproduce",
    "regress": "layer8_meta.regress",
    "bench": "layer8_meta.bench",
    "report": "layer8_meta.report.cli",
    "docs": "layer8_meta.docs_site",
    "notebooks": "layer8_meta.notebooks",
    "notes": "layer8_meta.notes.cli",
    "reflect": "layer8_meta.reflect",
    "papers": "layer8_meta.papers",
    "test-mine": "layer8_meta.mastery.cli",
    "progress": "layer8_meta.mastery.cli",
    "doctor": "layer8_meta.doctor",
}
# commands whose module serves several: it gets the command name as argv[0]
SHARED = {"runs", "show", "compare", "best", "index", "test-mine", "progress"}


def main(argv: list[str]) -> int:
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]])
        return module.main(argv if argv[0] in SHARED else argv[1:])
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        print("commands: " + ", ".join(COMMANDS))
    from layer0_math.lab import cli
    from layer8_meta import deliverables

    return cli(deliverables, argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
