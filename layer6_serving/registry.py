"""The model registry: a folder of named models, each a list of immutable numbered versions.

::

    <root>/<name>/<version>/        e.g. registry/resnet/3/
        manifest.json               name, version, created, kind, source, files, preprocessing,
                                    parity, reference (+ whatever the exporter adds)
        checkpoint/                 the layer-3 checkpoint the eager backend loads
        model.onnx, model.pt, ...   the exported files (``files`` maps backend -> them)

**A version exists once its folder carries a manifest.** :meth:`ModelRegistry.register` lets the
caller write the files into a hidden temporary folder inside ``<root>/<name>/`` (same file
system, so the final rename is atomic), claims the next free number with ``mkdir`` (atomic:
two concurrent registers can never claim the same one), writes the manifest into the temporary
folder and renames it onto the claimed (empty) folder. A crash at any point leaves either a
hidden temporary folder or an empty numbered one: neither has a manifest, so
:meth:`~ModelRegistry.versions` ignores both, and a reader never sees half a version.

**Nothing is opened from outside the registry.** Model names must match
:data:`NAME_PATTERN` (no ``/``, no ``..``, no absolute paths), versions are positive integers,
and every path handed out is resolved (symlinks followed) and checked to lie inside the root:
a request for ``../x`` or a symlink pointing elsewhere is a :class:`RegistryError` naming the
value and the rule, never a file read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from layer0_math.files import TMP_MARK
from layer0_math.lab import runs_root, write_json

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NAME_RULE = "1-64 characters of a-z, 0-9, '_' or '-', starting with a letter or digit"
MANIFEST = "manifest.json"
RESERVED = {"name", "version", "created"}  # manifest fields register sets itself


class RegistryError(ValueError):
    """A bad model name, an unknown name or version, or a path that would leave the root."""


def default_root() -> Path:
    """``$DLSTACK_REGISTRY``, else ``<runs>/registry`` (``$DLSTACK_RUNS`` or ``<repo>/runs``)."""
    env = os.environ.get("DLSTACK_REGISTRY")
    return Path(env) if env else runs_root() / "registry"


DEFAULT_ROOT = default_root  # called, not read: the environment may change after import


def check_name(name: Any) -> str:
    """``name`` if it is a valid model name, else a :class:`RegistryError` naming the rule."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RegistryError(f"invalid model name {name!r}: expected {NAME_RULE}")
    return name


def _check_version(version: Any) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RegistryError(f"invalid model version {version!r}: expected an integer >= 1")
    return version


class ModelRegistry:
    """The registry folder at ``root`` (created on the first register)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # ------------------------------------------------------------------------------ reading

    def _inside(self, path: Path, what: str) -> Path:
        """``path`` resolved, if it lies inside the root; else a RegistryError."""
        resolved = path.resolve()
        root = self.root.resolve()
        if resolved != root and root not in resolved.parents:
            raise RegistryError(f"{what} resolves to {resolved}, outside the registry {root}")
        return resolved

    def _model_dir(self, name: str) -> Path:
        return self._inside(self.root / check_name(name), f"model {name!r}")

    def names(self) -> list[str]:
        """The models with at least one complete version, sorted."""
        if not self.root.is_dir():
            return []
        found = []
        for p in sorted(self.root.iterdir()):
            if NAME_PATTERN.match(p.name) and p.is_dir():
                with contextlib.suppress(RegistryError):
                    if self.versions(p.name):
                        found.append(p.name)
        return found

    def versions(self, name: str) -> list[int]:
        """The complete versions of ``name`` (a folder with a manifest), ascending."""
        folder = self._model_dir(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in folder.iterdir()
            if p.name.isdigit() and p.name[0] != "0" and (p / MANIFEST).is_file()
        )

    def latest(self, name: str) -> int:
        """The newest complete version of ``name``; a RegistryError when there is none."""
        found = self.versions(name)
        if not found:
            known = self.names()
            raise RegistryError(
                f"no model {name!r} in the registry {self.root} (it has: {known or 'nothing'}); "
                "run `python -m layer6_serving export` (or `make layer6`) to export one"
            )
        return found[-1]

    def path(self, name: str, version: int | None = None) -> Path:
        """``<root>/<name>/<version>/`` of a complete version (``None``: the latest)."""
        if version is None:
            version = self.latest(name)
        _check_version(version)
        folder = self._inside(self._model_dir(name) / str(version), f"{name} version {version}")
        if not (folder / MANIFEST).is_file():
            raise RegistryError(
                f"model {name!r} has no version {version} (it has: {self.versions(name)})"
            )
        return folder

    def file(self, name: str, version: int, relative: str) -> Path:
        """A file a manifest lists, checked to lie inside the version's folder."""
        folder = self.path(name, version)
        if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
            raise RegistryError(f"manifest file entry {relative!r} is not a relative path")
        target = (folder / relative).resolve()
        if folder not in target.parents:
            raise RegistryError(
                f"manifest file entry {relative!r} of {name} v{version} leaves its folder"
            )
        if not target.exists():
            raise RegistryError(f"{name} v{version} lists {relative!r}, which is missing")
        return target

    def manifest(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of a version (``None``: the latest)."""
        path = self.path(name, version) / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RegistryError(f"{path} is not a readable manifest ({e})") from None
        if not isinstance(data, dict):
            raise RegistryError(f"{path} holds {type(data).__name__}, expected a JSON object")
        return data

    # ------------------------------------------------------------------------------ writing

    def register(self, name: str, build: Callable[[Path], dict[str, Any]]) -> int:
        """Add a version of ``name``: ``build(tmp_dir)`` writes the files into ``tmp_dir`` and
        returns the manifest's fields; they get ``name``, ``version`` and ``created`` and the
        folder becomes the next version, atomically. Returns the new version number."""
        folder = self._model_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".v{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            fields = build(tmp)
            if not isinstance(fields, dict):
                raise TypeError(f"build must return the manifest fields as a dict, got {fields!r}")
            clash = RESERVED & set(fields)
            if clash:
                raise ValueError(f"build may not set the manifest fields {sorted(clash)}")
            version = self._claim(folder)
            created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            write_json(
                tmp / MANIFEST, {"name": name, "version": version, "created": created, **fields}
            )
            os.rename(tmp, folder / str(version))  # onto the empty claimed folder: atomic
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return version

    @staticmethod
    def _claim(folder: Path) -> int:
        """The next version number, claimed by creating its (empty) folder."""
        while True:
            taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
            version = max(taken, default=0) + 1
            try:
                (folder / str(version)).mkdir()
                return version
            except FileExistsError:
                continue  # another register claimed it first
