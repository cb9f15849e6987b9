"""``python -m layer6_serving build-mar``: the registry's classifier as a TorchServe ``.mar``.

A ``.mar`` (model archive) is a zip that TorchServe unpacks into a worker's ``model_dir``:

::

    MAR-INF/MANIFEST.json    written by torch-model-archiver: model name, version, handler,
                             serializedFile
    model.pt                 the registry's TorchScript graph (pixels in [0, 1] -> logits)
    handler.py               layer6_serving/torchserve/handler.py
    index_to_name.json       class names ("0" -> "airplane", ...), TorchServe's convention
    preprocessing.json       image size, channels and the upload limits the handler enforces

The archive is built by ``torch-model-archiver`` (the PyPI tool TorchServe documents) into a
temporary folder and moved into place with ``os.replace``, so a reader never sees half an
archive. Only a TorchScript graph is packed: it needs neither this repository nor a model class
file inside the worker, which an eager ``state_dict`` would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from layer0_math.lab import runs_root
from layer6_serving.registry import ModelRegistry, RegistryError, default_root
from layer6_serving.torchserve import handler

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}


def archiver() -> str:
    """The ``torch-model-archiver`` executable beside this Python, else on PATH."""
    here = Path(sys.executable).parent / "torch-model-archiver"
    found = str(here) if here.exists() else shutil.which("torch-model-archiver")
    if not found:
        raise FileNotFoundError(
            "torch-model-archiver is not installed: `pip install torch-model-archiver` "
            "(it is in dlstack's dev extras: make setup)"
        )
    return found


def _sidecars(manifest: dict, folder: Path) -> list[Path]:
    """index_to_name.json and preprocessing.json from the version's manifest."""
    pre = manifest.get("preprocessing", {})
    classes, shape = pre.get("classes"), pre.get("shape")
    if not classes or not shape or len(shape) != 3:
        raise RegistryError(
            f"{manifest.get('name')} v{manifest.get('version')} has no classes/shape in its "
            "preprocessing: expected an exported classifier"
        )
    names = folder / "index_to_name.json"
    names.write_text(json.dumps({str(i): c for i, c in enumerate(classes)}, indent=1))
    config = folder / "preprocessing.json"
    config.write_text(json.dumps({"channels": shape[0], "image_size": shape[1], **LIMITS}))
    return [names, config]


def build_mar(
    registry: ModelRegistry, name: str, out_dir: Path, version: int | None = None
) -> Path:
    """Write ``<out_dir>/<name>.mar`` from the classifier ``name`` (``version`` None: latest)."""
    version = registry.latest(name) if version is None else version
    manifest = registry.manifest(name, version)
    if manifest.get("kind") != "classifier":
        raise RegistryError(
            f"{name} v{version} is a {manifest.get('kind')!r}, expected a "
            "classifier (the TorchServe handler serves the classifier)"
        )
    ts_files = manifest.get("files", {}).get("torchscript")
    if not ts_files or "model" not in ts_files:
        raise RegistryError(
            f"{name} v{version} has no TorchScript graph (backends: "
            f"{sorted(manifest.get('files', {}))}); export it first"
        )
    graph = registry.file(name, version, ts_files["model"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".mar-build-") as tmp:
        work = Path(tmp)
        model = work / "model.pt"
        shutil.copyfile(graph, model)
        extra = _sidecars(manifest, work)
        cmd = [
            archiver(),
            "--model-name",
            name,
            "--version",
            str(version),
            "--serialized-file",
            str(model),
            "--handler",
            handler.__file__,
            "--extra-files",
            ",".join(map(str, extra)),
            "--export-path",
            str(work),
            "--archive-format",
            "default",
            "--force",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"torch-model-archiver failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        target = out_dir / f"{name}.mar"
        os.replace(work / f"{name}.mar", target)
    return target


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m layer6_serving build-mar",
        description="Pack the registry's TorchScript classifier as a TorchServe .mar archive.",
    )
    p.add_argument(
        "--registry",
        type=Path,
        default=None,
        help="registry folder (default $DLSTACK_REGISTRY or runs/registry)",
    )
    p.add_argument("--name", default="resnet", help="the classifier's registry name")
    p.add_argument("--version", type=int, default=None, help="default: the latest")
    p.add_argument(
        "--out", type=Path, default=None, help="folder for <name>.mar (default runs/torchserve)"
    )
    args = p.parse_args(argv)
    registry = ModelRegistry(args.registry or default_root())
    out = args.out or runs_root() / "torchserve"
    try:
        path = build_mar(registry, args.name, out, args.version)
    except (RegistryError, FileNotFoundError, RuntimeError) as e:
        print(f"build-mar: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) from {registry.root}/{args.name}")
    print(f"serve it: torchserve --start --ncs --model-store {out} --models {args.name}.mar")
    return 0
