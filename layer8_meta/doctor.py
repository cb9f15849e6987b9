"""``python -m layer8_meta doctor``: is this machine ready for dlstack, and if not, what to do.

One line per check, ``ok`` / ``warn`` / ``FAIL``, and for anything not ok the fix::

    ok    python     3.11.7 (pyproject requires >=3.10)
    warn  cuda       CPU only: full presets will be slow (quick presets are sized for 2 CPU cores)
    FAIL  torch      2.12.0 installed, constraints.txt pins 2.13.0 -> fix: make setup

The checks: Python against ``requires-python``; torch against the ``constraints.txt`` pin, and
its build (CPU or CUDA); CUDA and the device name; every dataset of layer 0's registry, found
by the same lookup the loaders use ($DLSTACK_DATA, then the cache) with downloads turned off and
no array read; free disk where ``runs/`` lives; the ``.venv`` (this interpreter is it, ``make
setup`` ran after the last change of pyproject.toml/constraints.txt, every dependency installed
at its pinned version); Chromium for the browser tests; the git repository and whether the tree
is dirty (runs record the commit, and a dirty tree makes them hard to reproduce).

Each check is a pure function of what a *probe* found (``probe_*``, the only code that looks at
the machine), so the tests feed them a missing dataset, a full disk or the wrong torch. Exit 1
when any check FAILs, else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from layer0_math.lab import REPO_ROOT, runs_root
from layer0_math.runrecord import git_state

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the .venv check says it cannot read pyproject
    tomllib = None

DISK_WARN_GIB = 10.0  # a full layer 4-7 run writes checkpoints of a few GiB
DISK_FAIL_GIB = 2.0
CHROMIUM = Path("/usr/bin/chromium")  # the one tests/layer6/test_browser.py launches


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # ok | warn | FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> fix: {self.fix}" if self.fix and self.level != "ok" else ""
        return f"{self.level:<5} {self.name:<21} {self.detail}{fix}"


# ------------------------------------------------------------------------- the checks (pure)
def check_python(version: str, requires: str | None) -> Check:
    if requires is None:
        return Check("python", "warn", f"{version}; pyproject.toml has no requires-python")
    if Version(version) in SpecifierSet(requires):
        return Check("python", "ok", f"{version} (pyproject requires {requires})")
    return Check(
        "python", "FAIL", f"{version}, pyproject requires {requires}",
        f"install a Python {requires} and recreate the venv (rm -rf .venv && make setup)",
    )  # fmt: skip


def check_torch(installed: str | None, pinned: str | None, cuda_build: str | None) -> Check:
    if installed is None:
        return Check("torch", "FAIL", "torch is not installed", "make setup")
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU build"
    base = Version(installed).base_version  # 2.13.0+cpu -> 2.13.0
    if pinned is not None and base != Version(pinned).base_version:
        fix = "make setup (add TORCH_INDEX=https://download.pytorch.org/whl/cpu on a CPU machine)"
        return Check("torch", "FAIL", f"{installed} ({build}), constraints.txt pins {pinned}", fix)
    pin = ", the constraints.txt pin" if pinned else ", not pinned in constraints.txt"
    return Check("torch", "ok", f"{installed} ({build}{pin})")


def check_cuda(available: bool, device: str | None, cuda_build: str | None) -> Check:
    if available:
        return Check("cuda", "ok", f"CUDA available: {device}")
    if cuda_build:
        return Check(
            "cuda", "warn", f"a CUDA {cuda_build} build of torch, but no GPU is visible",
            "check nvidia-smi and CUDA_VISIBLE_DEVICES, or use the CPU presets",
        )  # fmt: skip
    return Check("cuda", "warn", "CPU only: full presets will be slow (quick presets fit 2 cores)")


def check_dataset(name: str, found: list[Path] | None, error: str, source: str) -> Check:
    """``found``: where each file of the dataset was found; None when one is missing."""
    label = f"data:{name}"
    if found is None:
        missing = error or "missing"
        fix = f"export DLSTACK_DATA=/path/to/data (a folder holding it), or download: {source}"
        return Check(label, "warn", missing, fix)
    if not found:
        return Check(label, "ok", source)
    folders = sorted({str(p.parent) for p in found})
    return Check(label, "ok", f"{len(found)} file(s) in {', '.join(folders)}")


def check_disk(free_bytes: int, where: Path) -> Check:
    gib = free_bytes / 2**30
    detail = f"{gib:.1f} GiB free at {where}"
    fix = f"free some space, or set DLSTACK_RUNS to a disk with more than {DISK_WARN_GIB:g} GiB"
    if gib < DISK_FAIL_GIB:
        return Check("disk", "FAIL", f"{detail} (under {DISK_FAIL_GIB:g} GiB)", fix)
    if gib < DISK_WARN_GIB:
        return Check("disk", "warn", f"{detail} (under {DISK_WARN_GIB:g} GiB)", fix)
    return Check("disk", "ok", detail)


def check_venv(facts: dict[str, Any]) -> Check:
    """facts: prefix, expected, stamp_fresh (bool | None: no stamp), missing, mismatched."""
    if Path(facts["prefix"]).resolve() != Path(facts["expected"]).resolve():
        return Check(
            "venv", "warn", f"running {facts['prefix']}, not the project's {facts['expected']}",
            "make setup, then use .venv/bin/python (or make targets)",
        )  # fmt: skip
    if facts["missing"]:
        listed = ", ".join(facts["missing"][:6])
        return Check("venv", "FAIL", f"not installed: {listed}", "make setup")
    if facts["stamp_fresh"] is False or facts["mismatched"]:
        why = ", ".join(facts["mismatched"][:6]) or "pyproject.toml/constraints.txt changed since"
        return Check("venv", "warn", f"out of date: {why}", "make setup")
    return Check("venv", "ok", f"{facts['expected']}, every dependency at its pin")


def check_chromium(path: Path | None) -> Check:
    if path is None:
        return Check(
            "chromium", "warn", f"{CHROMIUM} not found: the browser tests will be skipped",
            "sudo apt-get install chromium",
        )  # fmt: skip
    return Check("chromium", "ok", str(path))


def check_git(state: dict[str, Any]) -> Check:
    if state.get("commit") is None:
        return Check(
            "git", "warn", f"{REPO_ROOT} is not a git repository (runs cannot name a commit)",
            "git init && git add -A && git commit -m start (or clone the repository)",
        )  # fmt: skip
    if state.get("dirty"):
        return Check(
            "git", "warn", f"at {state['commit'][:10]}, uncommitted changes",
            "commit before long runs, so their manifests name code you can check out again",
        )  # fmt: skip
    return Check("git", "ok", f"at {state['commit'][:10]}, clean")


# ------------------------------------------------------------------- the probes (the machine)
def read_pyproject(path: Path = REPO_ROOT / "pyproject.toml") -> dict[str, Any] | None:
    if tomllib is None or not path.is_file():
        return None
    return tomllib.loads(path.read_text())


def read_pins(path: Path = REPO_ROOT / "constraints.txt") -> dict[str, str]:
    """``name==version`` lines of constraints.txt, names normalised (PEP 503)."""
    pins = {}
    text = path.read_text() if path.is_file() else ""
    for line in text.splitlines():
        found = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if found:
            pins[_normalise(found.group(1))] = found.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def probe_python() -> tuple[str, str | None]:
    project = (read_pyproject() or {}).get("project", {})
    return ".".join(map(str, sys.version_info[:3])), project.get("requires-python")


def probe_torch() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"installed": None, "cuda_build": None, "available": False, "device": None}
    available = torch.cuda.is_available()
    return {
        "installed": torch.__version__,
        "cuda_build": torch.version.cuda,
        "available": available,
        "device": torch.cuda.get_device_name(0) if available else None,
    }


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """DLSTACK_OFFLINE=1 for the block: the dataset lookup must never start a download."""
    before = os.environ.get("DLSTACK_OFFLINE")
    os.environ["DLSTACK_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["DLSTACK_OFFLINE"]
        else:
            os.environ["DLSTACK_OFFLINE"] = before


def probe_datasets() -> list[tuple[str, list[Path] | None, str, str]]:
    """(name, paths found or None, the lookup's error, source) per registry dataset."""
    from layer0_math.datasets import REGISTRY, DatasetError, cache_dir, data_dirs, locate

    looked = ", ".join(map(str, [*data_dirs(), cache_dir()]))
    out = []
    with _offline():
        for name, entry in REGISTRY.items():
            found: list[Path] | None = []
            error = ""
            for key in entry.files:
                try:
                    found.append(locate(name, key)[1])
                except DatasetError as exc:
                    first = str(exc).splitlines()[0].rstrip(".")
                    found, error = None, f"{first} (looked in {looked})"
                    break
            out.append((name, found, error, entry.source))
    return out


def probe_disk(where: Path) -> tuple[int, Path]:
    """Free bytes on the disk of ``where`` (its nearest existing folder)."""
    existing = Path(where).resolve()
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free, existing


def _requirements(project: dict[str, Any]) -> list[Requirement]:
    deps = list(project.get("dependencies", []))
    deps += project.get("optional-dependencies", {}).get("dev", [])
    return [Requirement(d) for d in deps]


def probe_venv() -> dict[str, Any]:
    venv = REPO_ROOT / ".venv"
    stamp = venv / ".installed"
    inputs = [REPO_ROOT / "pyproject.toml", REPO_ROOT / "constraints.txt"]
    newest = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    facts: dict[str, Any] = {
        "prefix": sys.prefix,
        "expected": str(venv),
        "stamp_fresh": stamp.stat().st_mtime >= newest if stamp.exists() else None,
        "missing": [],
        "mismatched": [],
    }
    project = (read_pyproject() or {}).get("project")
    if project is None:
        facts["mismatched"].append("pyproject.toml unreadable here (Python 3.10 has no tomllib)")
        return facts
    pins = read_pins()
    for req in [Requirement(project["name"]), *_requirements(project)]:
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            facts["missing"].append(req.name)
            continue
        pin = pins.get(_normalise(req.name))
        base = Version(have).base_version
        if pin and base != Version(pin).base_version or not req.specifier.contains(base, True):
            facts["mismatched"].append(f"{req.name} {have} (wants {pin or req.specifier})")
    return facts


def probe_chromium() -> Path | None:
    return CHROMIUM if CHROMIUM.exists() else None


def probe_git() -> dict[str, Any]:
    return git_state(REPO_ROOT)


def collect(runs_dir: Path | None = None) -> list[Check]:
    """Every check, from the probes (looked up at call time, so a test can replace one)."""
    mod = sys.modules[__name__]
    probe: Callable[..., Any]
    checks = [check_python(*mod.probe_python())]
    torch_facts = mod.probe_torch()
    pinned = read_pins().get("torch")
    checks.append(check_torch(torch_facts["installed"], pinned, torch_facts["cuda_build"]))
    checks.append(
        check_cuda(torch_facts["available"], torch_facts["device"], torch_facts["cuda_build"])
    )
    checks += [check_dataset(*found) for found in mod.probe_datasets()]
    probe = mod.probe_disk
    checks.append(check_disk(*probe(Path(runs_dir or runs_root()))))
    checks += [check_venv(mod.probe_venv()), check_chromium(mod.probe_chromium())]
    checks.append(check_git(mod.probe_git()))
    return checks


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m layer8_meta doctor", description=__doc__)
    parser.add_argument("--runs-dir", type=Path, help="default: $DLSTACK_RUNS or <repo>/runs")
    args = parser.parse_args(argv)
    checks = collect(args.runs_dir)
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if c.level == "FAIL"]
    warned = sum(c.level == "warn" for c in checks)
    verdict = f"FAIL: {', '.join(failed)}" if failed else "ready"
    print(f"doctor: {len(checks)} checks, {warned} to look at (warn); {verdict}")
    return 1 if failed else 0
