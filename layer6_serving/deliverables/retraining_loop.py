"""``retraining_loop``: drift detected on served inputs, a model retrained, compared, registered
and hot-reloaded by the running server without a failed request.

1. **A running server** (a subprocess on a free loopback port) serves the registry's CIFAR-10
   ResNet with ONNX Runtime and polls the registry for new versions every
   ``reload_interval_s``. The registry is a copy inside this run's folder, so the demo always
   starts from the exported model and leaves ``runs/registry`` as ``export_models`` wrote it.
2. **Traffic.** ``n_traffic`` CIFAR-10 test images as they are (PSI should stay below 0.1),
   then the same images **darkened** (``x' = 0.5 · x``: an under-exposed camera; ``shift`` and
   ``strength`` in the config). The monitor's PSI on ``/metrics`` (``dlstack_drift_psi``) and
   ``/v1/drift`` crosses 0.25.
3. **Retrain** (:mod:`layer6_serving.retrain`, the ``retrain`` command's library function) reads
   the report from ``/v1/drift``, fine-tunes the current weights through layer 3's pipeline on
   CIFAR-10 training images of which half are darkened, evaluates old and new on held-out test
   images (original and darkened) and registers the new version only if it is no worse on both.
4. **The swap under load.** A background client classifies darkened images the whole time;
   the server's poller finds the new version and swaps atomically. ``failed_requests_during_swap``
   counts every answer that was not 200 from the start of retraining until the new version
   had served requests; ``/metrics`` (``dlstack_model_version``) must show the new version.
5. **After.** The darkened traffic again: PSI against the new version's reference (its own
   training mix, half darkened), and the new version's accuracy.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from typing import Any

import httpx
import numpy as np

from layer0_math.datasets import load
from layer0_math.lab import RunContext, deliverable, pyplot
from layer0_math.runrecord import MissingArtifactError
from layer6_serving import loadgen
from layer6_serving.monitoring.shift import shift_uint8
from layer6_serving.registry import ModelRegistry, RegistryError, default_root
from layer6_serving.retrain import RetrainOptions, retrain

PACE_S = 0.02  # the background client's pause between requests (~ 40 requests/s at most)
MAKE_HINT = "run `make layer6` (or `python -m layer6_serving export_models`) first"


@deliverable(
    quick={
        "registry": None,  # None: $DLSTACK_REGISTRY or runs/registry
        "model": "resnet",
        "shift": "dark",
        "strength": 0.5,
        "fraction": 0.5,
        "n_traffic": 512,
        "concurrency": 4,
        "drift_window": 512,
        "threshold": 0.25,
        "steps": 300,
        "lr": 0.05,
        "batch_size": 128,
        "precision": "bf16",
        "n_train": None,
        "n_eval": 2000,
        "n_reference": 5000,
        "tolerance": 0.005,
        "augment": True,
        "reload_interval_s": 1.0,
        "seed": 0,
    },
    full={"steps": 1500, "n_eval": 10000, "n_traffic": 2000, "drift_window": 2000},
    headline=[
        "psi_before",
        "psi_after",
        "accuracy_old_shifted",
        "accuracy_new_shifted",
        "failed_requests_during_swap",
        "new_version",
    ],  # fmt: skip
)
def retraining_loop(ctx: RunContext) -> dict[str, Any]:
    """Serve, shift the traffic, see the drift, retrain, register, hot-swap under load."""
    cfg = ctx.config
    registry = _demo_registry(cfg["registry"], cfg["model"], ctx.out_dir / "registry")
    images = _cifar_images(cfg["n_traffic"], cfg["seed"])
    shifted = shift_uint8(images, cfg["shift"], cfg["strength"])
    flags = ["--backend", "onnx", "--classifier", cfg["model"], "--generator", "", "--denoiser",
             "", "--reload-interval-s", str(cfg["reload_interval_s"])]  # fmt: skip
    args = ["--registry", str(registry.root), *flags]
    with _environ(DLSTACK_DRIFT_WINDOW=str(cfg["drift_window"])), open(ctx.path("server.log"), "w") as log:
        server = loadgen.ServerProcess(args, log=log)
    with _environ(DLSTACK_DRIFT_WINDOW=str(cfg["drift_window"])), server:
        m = _demo(ctx, registry, server.url, images, shifted)
    _plot(ctx, m)
    return m


def _demo_registry(root: str | None, name: str, dest) -> ModelRegistry:
    source = ModelRegistry(root or default_root())
    try:
        source.latest(name)
    except RegistryError as exc:
        raise MissingArtifactError(f"no {name!r} in the model registry {source.root} ({exc}): "
                                   f"{MAKE_HINT}") from None  # fmt: skip
    shutil.copytree(source.root / name, dest / name, symlinks=False)
    return ModelRegistry(dest)


def _cifar_images(n: int, seed: int) -> np.ndarray:
    x, _ = load("cifar10", "test")
    return np.ascontiguousarray(x[np.random.default_rng(seed).permutation(len(x))[:n]])


def _send(url: str, images: np.ndarray, concurrency: int) -> dict[str, Any]:
    ep = loadgen.classify_endpoint(images)
    return asyncio.run(loadgen.load_test(url, [ep], len(images), [concurrency]))[0]


def _drift(client: httpx.Client, name: str) -> dict[str, Any]:
    return client.get("/v1/drift").json()[name]


def _served_version(client: httpx.Client, name: str) -> int:
    text = client.get("/metrics").text
    for line in text.splitlines():
        if line.startswith("dlstack_model_version{") and f'model="{name}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _demo(ctx, registry, url, images, shifted) -> dict[str, Any]:
    cfg = ctx.config
    name = cfg["model"]
    with httpx.Client(base_url=url, timeout=60) as client:
        baseline = _send(url, images, cfg["concurrency"])
        psi_original = _drift(client, name)["max_psi"]
        before = _send(url, shifted, cfg["concurrency"])
        report = client.get("/v1/drift").json()
        ctx.write_json("drift_before.json", report)
        old_version = _served_version(client, name)
        with _Background(url, shifted[:32]) as bg:
            decision = retrain(registry, name, report, _options(cfg), ctx.out_dir / "retrain",
                               parent_id=ctx.run_id)  # fmt: skip
            swapped_at = _wait_for_version(client, name, decision, old_version)
            bg.wait_for(bg.count() + 20)  # the new version serves some requests too
        ctx.write_json("decision.json", decision)
        after = _send(url, shifted, cfg["concurrency"])
        drift_after = _drift(client, name)
        ctx.write_json("drift_after.json", drift_after)
        new_served = _served_version(client, name)
    acc = decision.get("accuracy", {})
    return {
        "psi_original_traffic": psi_original,
        "psi_before": report[name]["max_psi"],
        "psi_before_feature": report[name]["max_feature"],
        "psi_after": drift_after["max_psi"],
        "psi_after_feature": drift_after["max_feature"],
        "retrained": decision["retrained"],
        "registered": decision["registered"],
        "reason": decision["reason"],
        "new_version": decision["new_version"],
        "served_version_before": old_version,
        "served_version_after": new_served,
        "swap_seconds_after_register": swapped_at,
        "accuracy_old_original": acc.get("current", {}).get("original"),
        "accuracy_old_shifted": acc.get("current", {}).get("shifted"),
        "accuracy_new_original": acc.get("candidate", {}).get("original"),
        "accuracy_new_shifted": acc.get("candidate", {}).get("shifted"),
        "requests_during_swap": bg.count(),
        "failed_requests_during_swap": bg.failed(),
        "errors_traffic": baseline["errors"] + before["errors"] + after["errors"],
        "metrics_agree": baseline["metrics_agree"]
        and before["metrics_agree"]
        and after["metrics_agree"],
        "shift": f"{cfg['shift']} {cfg['strength']}",
    }


def _options(cfg: dict) -> RetrainOptions:
    keys = set(RetrainOptions.__dataclass_fields__) & set(cfg)
    return RetrainOptions(**{k: cfg[k] for k in keys}, progress=True)


def _wait_for_version(client, name, decision, old: int, seconds: float = 120.0) -> float | None:
    """Seconds until /metrics shows the new version (None when nothing was registered)."""
    if not decision["registered"]:
        return None
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if _served_version(client, name) == decision["new_version"]:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"the server still serves v{old} {seconds:.0f} s after v"
                       f"{decision['new_version']} was registered")  # fmt: skip


class _Background:
    """A client classifying in a loop in a thread (``PACE_S`` between requests); counts every
    status it gets."""

    def __init__(self, url: str, images: np.ndarray) -> None:
        self.url, self.bodies = url, loadgen.classify_endpoint(images).bodies
        self.statuses: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _Background:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    body = self.bodies[i % len(self.bodies)]
                    status = str(client.post("/v1/classify", **body).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.statuses.append(status)
                i += 1
                self._stop.wait(PACE_S)  # a steady client, not a CPU hog beside the training

    def count(self) -> int:
        return len(self.statuses)

    def failed(self) -> int:
        return sum(s != "200" for s in self.statuses)

    def wait_for(self, n: int, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)


def _plot(ctx: RunContext, m: dict[str, Any]) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["original traffic", "darkened, v-old", "darkened, v-new"]
    values = [m["psi_original_traffic"], m["psi_before"], m["psi_after"]]
    a.bar(labels, values, color=["C0", "C3", "C2"])
    a.axhline(0.25, ls="--", c="k", label="0.25: major shift")
    a.axhline(0.1, ls=":", c="k", label="0.1: moderate")
    a.set_ylabel("max PSI over features")
    a.set_title("Drift of served inputs vs the model's training reference")
    a.legend(fontsize=8)
    sets = ["original", "shifted"]
    old = [m[f"accuracy_old_{s}"] or 0 for s in sets]
    new = [m[f"accuracy_new_{s}"] or 0 for s in sets]
    x = np.arange(2)
    b.bar(x - 0.2, old, 0.4, label="current")
    b.bar(x + 0.2, new, 0.4, label="retrained")
    b.set_xticks(x, ["held-out original", "held-out darkened"])
    b.set_ylabel("test accuracy")
    b.set_title("Old vs retrained classifier")
    b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(ctx.path("retraining_loop.png"), dpi=120)
    plt.close(fig)
