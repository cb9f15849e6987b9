"""``python -m layer6_serving export``: layer 4's trained models into the model registry.

Each run adds a new version of ``gpt``, ``ddpm`` and ``resnet`` (eager checkpoint, ONNX,
TorchScript, int8 ONNX for the GPT and the ResNet), after the ONNX checker and the parity
checks against eager PyTorch pass; a missing layer-4 run names ``make layer4``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from layer0_math.lab import MissingArtifactError
from layer6_serving.artifacts import KINDS, SOURCES
from layer6_serving.registry import DEFAULT_ROOT, ModelRegistry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layer6_serving export", description=__doc__)
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry folder (default $DLSTACK_REGISTRY or runs/registry)",
    )
    p.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help="where layer 4's runs are (default $DLSTACK_RUNS or runs/)",
    )
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--no-int8", action="store_true", help="skip the int8 ONNX graphs")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from layer6_serving.export.layer4 import export_layer4

    registry = ModelRegistry(args.registry or DEFAULT_ROOT())
    try:
        versions = export_layer4(
            registry,
            tuple(args.kinds),
            runs_dir=args.runs_dir,
            int8=not args.no_int8,
            seed=args.seed,
        )
    except MissingArtifactError as e:
        print(f"error: {e}")
        return 1
    for kind, version in versions.items():
        man = registry.manifest(SOURCES[kind].registry_name, version)
        print(
            f"{kind:>10}: {man['name']} v{version} ({', '.join(man['files'])}), "
            f"max abs diff vs eager {man['parity']['max_abs_diff']:.2e}"
        )
    print(f"registry: {registry.root}")
    return 0
