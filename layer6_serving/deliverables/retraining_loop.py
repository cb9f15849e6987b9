"""``retraining_loop``: drift seen on served inputs → a model retrained, judged, registered, and
hot-reloaded by the running server without a failed request.

1. **A private registry** (in the run folder) holds a copy of the classifier ``export_models``
   registered (its manifest carries the drift reference of its training images), so the demo's
   new version never changes what the real registry serves.
2. **A running server** (``python -m layer6_serving serve`` in a subprocess, ONNX Runtime,
   polling the registry every ``reload_interval_s``, a drift window of ``n_traffic`` images)
   first gets ``n_traffic`` CIFAR-10 *test* images as they are (shuffled: the split is stored
   sorted by class, and a class-sorted stream is itself a drift of the predicted classes): the
   drift (max PSI over the monitor's features, ``psi_original``) stays near its noise floor.
   Then the world shifts: the same number of test images **darkened** (``x' = strength · x``,
   strength 0.4 by default: an under-exposed camera), and the PSI on ``/metrics``
   (``dlstack_drift_psi``) climbs over the 0.25 threshold (``psi_shifted``).
3. **Retrain** (:mod:`~layer6_serving.retrain`, the same code as ``python -m layer6_serving
   retrain --report URL``): reads ``/v1/drift``, fine-tunes the current weights through layer 3's
   pipeline on training images half of which are darkened, evaluates old and new on held-out
   test images (original and darkened), and registers the new version only if it is no worse on
   both (within ``tolerance``).
4. **The swap under load**: all the while a background client keeps classifying darkened
   images; the server's poll finds the new version and swaps it in atomically. Every answer is
   logged: ``failed_requests_during_swap`` counts the non-200s from the retrain's start to the
   end (it must be 0), ``/metrics``' ``dlstack_model_version`` must show the new version, and
   the drift against the new model's reference (its training mix) is ``psi_after``.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import Any

import httpx
import numpy as np

from layer0_math.lab import RunContext, deliverable
from layer6_serving import loadgen
from layer6_serving.monitoring.shift import shift_uint8
from layer6_serving.registry import ModelRegistry, default_root
from layer6_serving.retrain import RetrainOptions, held_out, retrain

MISSING = (
    "the retraining demo starts from the classifier export_models registered, and there is "
    "none in {root}: run `make layer6` (or `python -m layer6_serving export_models`) first"
)


@deliverable(
    quick={
        "registry": None,  # None: the default registry (runs/registry)
        "model": "resnet",
        "source": "real",
        "shift": "dark",
        "strength": 0.4,
        "n_traffic": 500,  # served images before and after the shift
        "threshold": 0.25,
        "steps": 200,
        "lr": 0.02,
        "batch_size": 128,
        "fraction": 0.5,
        "n_train": None,
        "n_eval": 2000,
        "n_reference": 5000,
        "tolerance": 0.005,
        "augment": True,
        "reload_interval_s": 1.0,
        "after_swap_s": 3.0,  # background traffic kept up after the new version is served
    },
    full={"steps": 600, "n_traffic": 1000},
    headline=[
        "psi_shifted",
        "psi_after",
        "accuracy_old_shifted",
        "accuracy_new_shifted",
        "failed_requests_during_swap",
        "new_version",
    ],  # fmt: skip
)
def retraining_loop(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    registry = _private_registry(cfg, ctx.path("registry"))
    opts = _options(cfg, ctx.seed)
    sets = held_out(registry.manifest(cfg["model"])["preprocessing"], opts)
    # the test split is stored sorted by class: shuffled, or the traffic's class mix drifts too
    order = np.random.default_rng(ctx.seed).permutation(len(sets["original"][0]))
    original = sets["original"][0][order[: cfg["n_traffic"]]]
    shifted = shift_uint8(original, cfg["shift"], cfg["strength"])
    args = ["--registry", str(registry.root), "--backend", "onnx", "--classifier", cfg["model"],
            "--generator", "", "--denoiser", "",
            "--reload-interval-s", str(cfg["reload_interval_s"])]  # fmt: skip
    window = {"DLSTACK_DRIFT_WINDOW": str(cfg["n_traffic"])}  # one traffic phase fills it
    with (
        open(ctx.path("server.log"), "w") as log,
        loadgen.ServerProcess(args, log=log, env=window) as srv,
    ):
        client = httpx.Client(base_url=srv.url, headers=loadgen.api_headers(), timeout=60)
        with client:
            psi_original = _send(client, original, cfg["model"])
            psi_shifted = _send(client, shifted, cfg["model"])
            report = client.get("/v1/drift").json()
            feature = report[cfg["model"]]["max_feature"]
            on_metrics = _metric(client, "dlstack_drift_psi", cfg["model"], feature)
            out = _swap(ctx, client, registry, report, opts, shifted, cfg)
            after = client.get("/v1/drift").json()[cfg["model"]]
            out["metrics_version"] = _metric(client, "dlstack_model_version", cfg["model"])
    ctx.write_json("drift_before.json", report)
    ctx.write_json("drift_after.json", after)
    acc = out.pop("accuracy", None) or {}
    return out | {
        "psi_original": psi_original,
        "psi_shifted": psi_shifted,
        "psi_shifted_on_metrics": on_metrics,
        "psi_feature": feature,
        "psi_after": after["max_psi"],
        "accuracy_old_original": acc.get("current", {}).get("original"),
        "accuracy_old_shifted": acc.get("current", {}).get("shifted"),
        "accuracy_new_original": acc.get("candidate", {}).get("original"),
        "accuracy_new_shifted": acc.get("candidate", {}).get("shifted"),
    }


def _private_registry(cfg: dict[str, Any], root) -> ModelRegistry:
    source = ModelRegistry(cfg["registry"] or default_root())
    if cfg["model"] not in source.names():
        raise FileNotFoundError(MISSING.format(root=source.root))
    version = source.latest(cfg["model"])
    shutil.copytree(source.path(cfg["model"], version), root / cfg["model"] / str(version))
    return ModelRegistry(root)


def _options(cfg: dict[str, Any], seed: int) -> RetrainOptions:
    fields = set(RetrainOptions.__dataclass_fields__)
    return RetrainOptions(**{k: v for k, v in cfg.items() if k in fields}, seed=seed)


def _send(client: httpx.Client, images: np.ndarray, model: str) -> float:
    """Classify every image (PNG uploads); the max PSI the server reports afterwards."""
    for png in _pngs(images):
        r = client.post("/v1/classify", files={"file": ("x.png", png, "image/png")})
        r.raise_for_status()
    return float(client.get("/v1/drift").json()[model]["max_psi"])


def _pngs(images: np.ndarray) -> list[bytes]:
    from io import BytesIO

    from PIL import Image

    out = []
    for image in images:
        buf = BytesIO()
        Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _metric(client: httpx.Client, name: str, model: str, feature: str | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if (
                s.name == name
                and s.labels.get("model") == model
                and (feature is None or s.labels.get("feature") == feature)
            ):
                return float(s.value)
    return float("nan")


def _swap(ctx, client, registry, report, opts, shifted, cfg) -> dict[str, Any]:
    """Retrain with a background client running; wait for the server to serve the new version."""
    stop, log = threading.Event(), []
    pngs = _pngs(shifted)
    worker = threading.Thread(target=_traffic, args=(str(client.base_url), pngs, stop, log),
                              daemon=True)  # fmt: skip
    worker.start()
    try:
        decision = retrain(registry, cfg["model"], report, opts, run_dir=ctx.path("retrain"),
                           parent_id=ctx.run_id)  # fmt: skip
        new = decision["new_version"]
        if new is not None:
            deadline = time.monotonic() + 60 + 10 * cfg["reload_interval_s"]
            while _served_version(client, cfg["model"]) != new and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(cfg["after_swap_s"])
    finally:
        stop.set()
        worker.join(60)
    versions = sorted({v for _, v in log if v is not None})
    return {
        "decision": decision["reason"],
        "registered": decision["registered"],
        "new_version": decision["new_version"],
        "accuracy": decision.get("accuracy"),
        "requests_during_swap": len(log),
        "failed_requests_during_swap": sum(1 for s, _ in log if s != 200),
        "versions_seen_during_swap": versions,
        "served_version": _served_version(client, cfg["model"]),
    }


def _served_version(client: httpx.Client, model: str) -> int | None:
    models = client.get("/readyz").json().get("models", {})
    return models.get(model, {}).get("version")


def _traffic(url: str, pngs: list[bytes], stop: threading.Event, log: list) -> None:
    """Classify ``pngs`` round-robin until ``stop`` (a client of its own: another thread);
    log (status, version) of every answer, status 0 for no answer."""
    with httpx.Client(base_url=url, headers=loadgen.api_headers(), timeout=60) as client:
        i = 0
        while not stop.is_set():
            file = {"file": ("x.png", pngs[i % len(pngs)], "image/png")}
            try:
                r = client.post("/v1/classify", files=file)
                ok = r.status_code == 200
                log.append((r.status_code, r.json().get("version") if ok else None))
            except httpx.HTTPError:
                log.append((0, None))
            i += 1
