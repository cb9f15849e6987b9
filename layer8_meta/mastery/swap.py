"""The substitution behind mastery mode: the learner's file becomes a reference module.

Tests reach the code through the public API (``from layer1_autograd import Value``), so a
reimplementation can stand in for the reference if it is in place before any test module is
imported. :func:`install` does it in four steps:

1. import the real package and module (``layer1_autograd.value``), so the rest of the layer is
   loaded and wired as usual;
2. load the learner's file *under the target's name* (``layer1_autograd.value``, package
   ``layer1_autograd``, so its relative and absolute imports resolve as the reference's do);
3. check it defines every public name of the reference (``__all__``, or the classes and
   functions the module defines): a missing one is an error naming them all, before any test runs;
4. put it in ``sys.modules`` and on the package, and rebind every reference to the real objects
   in the project's loaded modules: the re-export ``layer1_autograd.Value`` and the
   ``from layer1_autograd.value import Value`` in ``value_nn.py``, ``training.py``, ``draw.py``...
   A module is rebound by identity (the dict entry *is* the old object), so aliases move too.

What cannot move: values computed from the real objects at import time (a tuple of the names a
class implements, say) keep what they computed; the concept's tests are chosen so that does not
matter. The swap is passed to the pytest subprocess as ``DLSTACK_IMPL=module=/abs/file.py``
(several joined by ``os.pathsep``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from layer0_math.lab import REPO_ROOT

__all__ = ["ENV", "Swap", "SwapError", "check", "format_env", "install", "load_impl", "parse_env"]

ENV = "DLSTACK_IMPL"
# immutable values Python shares between modules (1 is 1 everywhere): never moved by identity
_SHARED_CONSTANTS = (int, float, complex, str, bytes, tuple, frozenset, type(None))


class SwapError(ValueError):
    """The swap cannot be made: a bad target, an unreadable file, or missing names."""


@dataclass(frozen=True)
class Swap:
    target: str  # dotted name of the reference module, e.g. layer1_autograd.value
    impl: Path  # the learner's file


def parse_env(text: str) -> list[Swap]:
    """``mod=/path[:mod2=/path2]`` → swaps (an empty string: none)."""
    swaps = []
    for item in filter(None, text.split(os.pathsep)):
        target, sep, path = item.partition("=")
        if not sep or not target or not path:
            raise SwapError(f"{ENV}: expected module=/path/to/file.py, got {item!r}")
        swaps.append(Swap(target.strip(), Path(path)))
    return swaps


def format_env(swaps: list[Swap]) -> str:
    return os.pathsep.join(f"{s.target}={Path(s.impl).resolve()}" for s in swaps)


def real_module(target: str) -> ModuleType:
    """The reference module ``target`` (imported), or a SwapError saying what was expected."""
    if "." not in target:
        raise SwapError(f"target {target!r}: expected a layer's module, e.g. layer1_autograd.value")
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        raise SwapError(f"target {target!r} is not an importable module ({exc})") from None
    if hasattr(module, "__path__"):
        raise SwapError(f"target {target!r} is a package: name one of its modules")
    return module


def public_names(module: ModuleType) -> list[str]:
    """The names the reference promises: ``__all__``, else the classes and functions it defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == module.__name__
    )


def load_impl(target: str, impl: Path) -> ModuleType:
    """Execute the learner's file as module ``target`` (sys.modules is left as it was)."""
    impl = Path(impl)
    if impl.suffix != ".py" or not impl.is_file():
        raise SwapError(f"--impl {impl}: expected an existing Python file (.py)")
    spec = importlib.util.spec_from_file_location(target, impl)
    if spec is None or spec.loader is None:
        raise SwapError(f"--impl {impl}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(target)
    sys.modules[target] = module  # dataclasses and pickling look themselves up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise SwapError(f"--impl {impl}: importing it failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if previous is not None:
            sys.modules[target] = previous
        else:
            sys.modules.pop(target, None)
    return module


def missing_names(real: ModuleType, mine: ModuleType) -> list[str]:
    return [name for name in public_names(real) if not hasattr(mine, name)]


def _project_modules(root: Path) -> list[ModuleType]:
    """Loaded modules whose file is under ``root`` (layers, tests, conftests), not its .venv."""
    venv = root / ".venv"
    found = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path is None:
            continue
        p = Path(path)
        if p.is_relative_to(root) and not p.is_relative_to(venv):
            found.append(module)
    return found


def _rebind(real: ModuleType, mine: ModuleType, root: Path) -> int:
    """Point every project reference to a public object of ``real`` (or to it) at ``mine``'s."""
    moves = {
        id(getattr(real, n)): getattr(mine, n)
        for n in public_names(real)
        if hasattr(real, n) and not isinstance(getattr(real, n), _SHARED_CONSTANTS)
    }
    moves[id(real)] = mine
    count = 0
    for module in _project_modules(root):
        if module is mine or module is real:
            continue
        namespace = vars(module)
        for key, value in list(namespace.items()):
            if id(value) in moves and not key.startswith("__"):
                namespace[key] = moves[id(value)]
                count += 1
    return count


def check(swap: Swap) -> tuple[ModuleType, ModuleType]:
    """(real, learner's) modules, the learner's loaded but not installed; SwapError if unfit."""
    real = real_module(swap.target)
    mine = load_impl(swap.target, swap.impl)
    missing = missing_names(real, mine)
    if missing:
        raise SwapError(
            f"{swap.impl} does not define {', '.join(missing)}: the tests of {swap.target} use "
            f"{'it' if len(missing) == 1 else 'them'} (the reference defines "
            f"{', '.join(public_names(real))})"
        )
    return real, mine


def install(swap: Swap, root: Path = REPO_ROOT) -> int:
    """Make ``swap.impl`` the module ``swap.target`` in every module under ``root``; returns the
    number of bindings moved."""
    real, mine = check(swap)
    sys.modules[swap.target] = mine
    package, _, leaf = swap.target.rpartition(".")
    setattr(sys.modules[package], leaf, mine)
    return _rebind(real, mine, root)
