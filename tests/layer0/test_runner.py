"""The layer runner from outside: real subprocesses, real signals, a fake layer in tmp.

Each test writes a tiny layer package (``layer9_demo``) into its own git repository under
tmp_path, runs ``python -m layer9_demo`` as a user would, and checks the table, the exit status
and the manifests the runs left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

DELIVERABLES = """
import os
import time

from layer0_math.lab import deliverable, open_run

__all__ = os.environ.get("DEMO_ALL", "quick_ok sleeper fails_long").split()  # run order

@deliverable(quick={"k": 2}, headline=["k"])
def quick_ok(ctx):
    return {"k": ctx.config["k"], "other": 1}


@deliverable(quick={})
def sleeper(ctx):
    if "DEMO_SLEEP" not in os.environ:
        return {}
    mark = os.environ["DEMO_MARK"]
    # a sub-run inside the deliverable's folder, as layer 3's training pipeline opens one
    sub = dict(preset="quick", seed=0, config={}, parent_id=ctx.run_id)
    with open_run("layer9_demo", "sub", run_dir=ctx.out_dir / "main", **sub):
        with open(mark + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(mark + ".tmp", mark)  # the test sees the pid only once it is whole
        for _ in range(600):
            time.sleep(0.1)
    return {}


@deliverable(quick={})
def fails_long(ctx):
    raise ValueError("x" * 150 + " the end of a long first line\\nsecond line")
"""


def _git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def demo(tmp_path):
    """(command prefix, env, runs folder, code folder) for the fake layer ``layer9_demo``."""
    code = tmp_path / "code"
    pkg = code / "layer9_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "deliverables.py").write_text(textwrap.dedent(DELIVERABLES))
    (pkg / "__main__.py").write_text(
        "from layer0_math.lab import cli\nfrom layer9_demo import deliverables\n"
        "raise SystemExit(cli(deliverables))\n"
    )
    (code / ".gitignore").write_text("__pycache__/\n")
    _git(code, "init", "-q")
    _git(code, "add", ".")
    _git(code, "commit", "-q", "-m", "demo")
    path = os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])
    env = {
        **os.environ,
        "PYTHONPATH": path,
        "DEMO_MARK": str(tmp_path / "pid"),
        "DLSTACK_PROGRESS": "0",
    }
    env.pop("FORCE", None)
    runs = tmp_path / "r"
    cmd = [sys.executable, "-m", "layer9_demo", "--runs-dir", str(runs)]
    return cmd, env, runs, code


def _run(demo, *args, env=None):
    cmd, demo_env, _, _ = demo
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        env={**demo_env, **(env or {})},
        cwd=demo[3].parent,
        timeout=120,
    )


def _start(demo, *args):
    cmd, env, _, _ = demo
    return subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "DEMO_SLEEP": "1"},
        cwd=demo[3].parent,
        start_new_session=True,  # its own process group: a "terminal" Ctrl-C reaches only it
        # a shell starts background jobs with SIGINT ignored, and Python then never raises
        # KeyboardInterrupt; give the runner the default disposition, as in a terminal
        preexec_fn=_sigint_default,
    )


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _child_pid(demo, proc, timeout=30.0):
    mark = demo[3].parent / "pid"
    deadline = time.monotonic() + timeout
    while not mark.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.05)
    return int(mark.read_text())


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _runs_of(demo, name):
    return sorted((demo[2] / "layer9_demo" / name).glob("[0-9]*"))


def _manifest(run):
    return json.loads((run / "manifest.json").read_text())


def _row(stdout, name):
    (row,) = [line for line in stdout.splitlines() if line.startswith(f"layer9_demo/{name} ")]
    return [cell.strip() for cell in row.split("|")]


def _signal_runner(demo, send):
    """Start the sleeper, deliver a signal with ``send(proc, child_pid)``, collect the result."""
    proc = _start(demo, "sleeper")
    pid = None
    try:
        pid = _child_pid(demo, proc)
        send(proc, pid)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if pid is not None:
            _kill_quietly(pid)
    return proc.returncode, out, err


def test_sigterm_to_the_runner_records_interrupted_and_prints_the_table(demo):
    rc, out, err = _signal_runner(demo, lambda proc, pid: proc.send_signal(signal.SIGTERM))
    assert rc == 143, out + err
    (run,) = _runs_of(demo, "sleeper")
    man, sub = _manifest(run), _manifest(run / "main")
    assert man["status"] == "interrupted" and man["error"] == "interrupted by SIGTERM"
    assert sub["status"] == "interrupted" and sub["parent_id"] == man["run_id"]
    status, why, _, where = _row(out, "sleeper")[1:]
    assert status == "INTERRUPTED" and why == "interrupted by SIGTERM"
    assert where.endswith(str(run.relative_to(demo[3].parent)))
    assert "Traceback" not in err and "interrupted by SIGTERM" in err


def test_ctrl_c_prints_one_line_and_the_table_and_exits_130(demo):
    rc, out, err = _signal_runner(demo, lambda proc, pid: os.killpg(proc.pid, signal.SIGINT))
    assert rc == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "interrupted by SIGINT during layer9_demo/sleeper; rerun to resume (finished "
        "deliverables are skipped)"
    ]
    (run,) = _runs_of(demo, "sleeper")
    assert _manifest(run)["status"] == "interrupted"
    assert _row(out, "sleeper")[1] == "INTERRUPTED"


def test_kill_9_of_a_child_is_recorded_as_failed_in_that_runs_folder(demo):
    old = demo[2] / "layer9_demo" / "sleeper" / "20000101-000000-000000"
    old.mkdir(parents=True)
    (old / "error.txt").write_text("an old failure\n")
    (old / "manifest.json").write_text(json.dumps({"status": "failed", "error": "old failure"}))

    proc = _start(demo, "sleeper", "quick_ok")
    pid = None
    try:
        pid = _child_pid(demo, proc)
        (_runs_of(demo, "sleeper")[-1] / ".metrics.json.tmp-1").write_text("{half")
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, out + err
    old_run, run = _runs_of(demo, "sleeper")
    assert old_run == old
    man = _manifest(run)
    assert man["status"] == "failed" and man["error"] == "killed by signal 9 (SIGKILL)"
    assert man["run_id"] and man["deliverable"] == "sleeper"  # the child's record, completed
    sub = _manifest(run / "main")
    assert sub["status"] == "failed" and sub["error"].startswith("killed by signal 9 (SIGKILL)")
    assert not list(run.glob(".*tmp*")), "partial writes of the killed run are removed"
    status, why, _, where = _row(out, "sleeper")[1:]
    assert status == "FAILED" and why == "killed by signal 9 (SIGKILL)"
    assert where.endswith(run.name), where
    assert _row(out, "quick_ok")[1] == "ok"


def test_a_failure_why_is_its_whole_first_line_and_names_this_runs_error_txt(demo):
    proc = _run(demo, "fails_long", "quick_ok")
    assert proc.returncode == 1
    (run,) = _runs_of(demo, "fails_long")
    _, status, why, _, where = _row(proc.stdout, "fails_long")
    assert status == "FAILED"
    assert why == "ValueError: " + "x" * 150 + " the end of a long first line"
    assert where == str((run / "error.txt").relative_to(demo[3].parent))
    assert "second line" not in proc.stdout and "Traceback" not in proc.stderr


def test_an_unknown_device_is_refused_before_anything_runs(demo):
    proc = _run(demo, "--device", "tpu")
    assert proc.returncode == 2
    assert "'tpu'" in proc.stderr and "cpu, cuda, cuda:N" in proc.stderr
    assert "Traceback" not in proc.stderr and not demo[2].exists()


def test_up_to_date_deliverables_are_skipped_unless_forced(demo):
    demo[1]["DEMO_ALL"] = "quick_ok fails_long"
    first = _run(demo)
    assert first.returncode == 1  # fails_long fails; the rest ran
    (ok_run,) = _runs_of(demo, "quick_ok")
    again = _run(demo)
    _, status, metrics, seconds, where = _row(again.stdout, "quick_ok")
    assert status == "skipped (up to date)" and metrics == "k=2" and seconds == "-"
    assert where == str(ok_run.relative_to(demo[3].parent))
    assert f"skipped (up to date: {where})" in again.stdout
    assert _row(again.stdout, "fails_long")[1] == "FAILED"  # a failed run is never up to date
    assert len(_runs_of(demo, "quick_ok")) == 1

    assert _row(_run(demo, "--force").stdout, "quick_ok")[1] == "ok"
    assert _row(_run(demo, env={"FORCE": "1"}).stdout, "quick_ok")[1] == "ok"
    assert len(_runs_of(demo, "quick_ok")) == 3


def test_a_changed_working_tree_or_config_reruns(demo):
    demo[1]["DEMO_ALL"] = "quick_ok"
    assert _run(demo, "quick_ok").returncode == 0  # named: runs, and is a record to skip by
    assert _row(_run(demo).stdout, "quick_ok")[1].startswith("skipped")
    (demo[3] / "notes.txt").write_text("an untracked file changes the tree\n")
    assert _row(_run(demo).stdout, "quick_ok")[1] == "ok"
    assert _row(_run(demo).stdout, "quick_ok")[1].startswith("skipped")
    assert _row(_run(demo, "--seed", "1").stdout, "quick_ok")[1] == "ok"
    assert len(_runs_of(demo, "quick_ok")) == 3


def test_a_child_that_fails_before_its_run_opens_still_records_why(tmp_path, capsys):
    from layer0_math import runner

    run = tmp_path / "run"
    run.mkdir()
    assert runner.main(["_one", "layer9_absent", "d", "--run-dir", str(run)]) == 1
    man = _manifest(run)
    assert man["status"] == "failed" and man["deliverable"] == "d"
    assert man["error"] == "ModuleNotFoundError: No module named 'layer9_absent'"
    assert "Traceback" in (run / "error.txt").read_text()
    assert "Traceback" not in capsys.readouterr().err


def test_a_layer_whose_deliverables_do_not_load_fails_and_the_next_layer_runs(
    demo, monkeypatch, capsys
):
    import argparse

    from layer0_math import runner

    broken = demo[3] / "layer9_broken"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "deliverables.py").write_text("import layer9_missing_dependency\n")
    monkeypatch.syspath_prepend(str(demo[3]))
    monkeypatch.setenv("PYTHONPATH", demo[1]["PYTHONPATH"])
    monkeypatch.setenv("DEMO_ALL", "quick_ok")
    args = argparse.Namespace(
        names=[], preset="quick", seed=0, device=None, runs_dir=demo[2], force=True
    )
    first, second = runner.run_layers(["layer9_broken", "layer9_demo"], args)
    assert (first.layer, first.status) == ("layer9_broken", "FAILED")
    assert first.why == (
        "its deliverables do not load: ModuleNotFoundError: "
        "No module named 'layer9_missing_dependency'"
    )
    assert (second.name, second.status) == ("quick_ok", "ok")
