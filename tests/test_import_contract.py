"""The layer contract (import-linter, from pyproject.toml) holds here, and catches violations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _toml_config(cfg: dict) -> str:
    lines = [
        "[tool.importlinter]",
        f"root_packages = {cfg['root_packages']!r}".replace("'", '"'),
        "include_external_packages = true",
    ]
    for c in cfg["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        for k, v in c.items():
            lines.append(f"{k} = {v!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


def _lint(tmp_path: Path, imports: dict[str, str]) -> subprocess.CompletedProcess:
    """Build a fake tree of every layer package, with the given module bodies, and lint it."""
    cfg = _config()
    for pkg in cfg["root_packages"]:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(imports.get(pkg, ""))
    external = {m for c in cfg["contracts"] for m in c.get("forbidden_modules", [])}
    for mod in external:  # torch, and layer 7's test-only references
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text("")
    (tmp_path / "contract.toml").write_text(_toml_config(cfg))
    return subprocess.run(
        [LINT, "--config", "contract.toml", "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed")


def test_downward_imports_pass(tmp_path):
    proc = _lint(
        tmp_path,
        {
            "layer1_autograd": "import layer0_math\n",
            "layer3_framework": "import layer2_primitives\nimport torch\n",
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    proc = _lint(tmp_path, {"layer0_math": "import layer1_autograd\n"})
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "layer0_math -> layer1_autograd" in proc.stdout


def test_torch_in_a_scratch_layer_breaks_the_forbidden_contract(tmp_path):
    proc = _lint(tmp_path, {"layer2_primitives": "import torch\n"})
    assert proc.returncode != 0
    assert "no torch" in proc.stdout and "BROKEN" in proc.stdout


def test_a_lower_layer_importing_the_workspace_breaks_the_layers_contract(tmp_path):
    # layer 8 reads what the layers leave in runs/; nothing below may depend on it
    proc = _lint(tmp_path, {"layer7_research": "import layer8_meta\n"})
    assert proc.returncode != 0
    assert "layer7_research -> layer8_meta" in proc.stdout


@pytest.mark.parametrize("reference", ["peft", "rank_bm25", "transformers"])
def test_a_test_only_reference_in_layer7_breaks_its_contract(tmp_path, reference):
    proc = _lint(tmp_path, {"layer7_research": f"import {reference}\n"})
    assert proc.returncode != 0
    assert "only in tests" in proc.stdout and "BROKEN" in proc.stdout


def test_the_repository_keeps_the_contract():
    proc = subprocess.run(
        [LINT, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
