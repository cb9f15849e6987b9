"""The command line refuses a bad config before the first step, with one clear line and no
traceback: wrong types, unknown keys, a schedule shorter than the run, unknown names, a device
that does not exist. Each case is the command line's own entry point (``main``, as
``python -m layer3_framework.train`` runs it) with its stderr captured; the cases share one
subprocess, which would otherwise spend seconds per case importing torch. One case also runs
as a real ``python -m`` command, so that nothing the shared process sets up hides a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "data.source=synthetic",
    "data.n_train=32",
    "data.n_test=16",
    "data.batch_size=16",
    "trainer.max_steps=3",
    "trainer.progress=false",
    "logger=jsonl",
    "model.widths=[4,8]",
]
# (bad overrides, what stderr must name); all but the group names are our own checks (exit 2)
CASES = {
    "int_given_text": (["trainer.max_steps=abc"], ["trainer.max_steps", "'abc'", "int"]),
    "float_given_text": (["optim.lr=abc"], ["optim.lr", "'abc'", "float"]),
    "int_given_float": (["trainer.max_steps=1.5"], ["trainer.max_steps", "1.5", "int"]),
    "unknown_root_key": (["+foo=1"], ["foo", "unknown key"]),
    "unknown_group_key": (["+trainer.bogus=1"], ["trainer.bogus", "unknown key"]),
    "unknown_model_kwarg": (["+model.depth=3"], ["model.depth", "unknown key"]),
    "short_schedule": (["optim.total_steps=2"], ["optim.total_steps=2", "trainer.max_steps=3"]),
    "bad_precision": (["trainer.precision=fp8"], ["fp8", "precision"]),
    "unknown_dataset_name": (["data.name=imagenet"], ["imagenet"]),
    "device_tpu": (["device=tpu"], ["tpu"]),
    "unknown_model": (["model=resnet"], ["resnet"]),
    "unknown_data": (["data=imagenet"], ["imagenet"]),
}
HYDRA_OWN = {"unknown_model", "unknown_data"}  # composition errors: Hydra's message, exit 1


DRIVER = """
import contextlib, io, json, os, sys, traceback
from hydra.core.global_hydra import GlobalHydra
from layer3_framework.train import main
out = {}
for name, (runs, argv) in json.loads(sys.argv[1]).items():
    os.environ["DLSTACK_RUNS"] = runs
    GlobalHydra.instance().clear()
    sys.argv = ["layer3_framework.train", *argv]
    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            traceback.print_exc()
            code = -1
    out[name] = [code, err.getvalue()]
print(json.dumps(out))
"""


def _env(runs: Path) -> dict[str, str]:
    env = {**os.environ, "DLSTACK_RUNS": str(runs), "DLSTACK_PROGRESS": "0"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every case's (return code, stderr, runs folder)."""
    runs = {name: tmp_path_factory.mktemp(name) for name in CASES}
    cases = {name: [str(runs[name]), [*SMALL, *bad]] for name, (bad, _) in CASES.items()}
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        env=_env(tmp_path_factory.mktemp("driver")),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (code, err, runs[name]) for name, (code, err) in found.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_config_is_one_clear_line_before_any_step(case, results):
    code, err, runs = results[case]
    _check(case, code, err, runs)


@pytest.mark.slow
def test_the_real_command_line_prints_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "layer3_framework.train", *SMALL, "trainer.max_steps=abc"],
        env=_env(tmp_path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    _check("int_given_text", proc.returncode, proc.stderr, tmp_path)


def _check(case: str, code: int, err: str, runs: Path) -> None:
    assert code != 0, f"{CASES[case][0]} was accepted"
    assert "Traceback" not in err, err[-3000:]
    for piece in CASES[case][1]:
        assert piece in err, f"stderr does not name {piece!r}: {err[-2000:]}"
    if case not in HYDRA_OWN:
        assert code == 2 and err.strip().splitlines()[-1].startswith("error: "), err[-2000:]
    assert not list(runs.rglob("step_*.safetensors")), "training started"
    assert not list(runs.rglob("metrics.jsonl")), "training started"
