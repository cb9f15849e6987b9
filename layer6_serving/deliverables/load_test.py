"""``load_test``: the service under a bounded load on loopback, and what the runtime and the
micro-batcher buy.

The service (``python -m layer6_serving serve``) is started in a subprocess over the registry
``export_models`` wrote, once per **configuration**: ONNX Runtime with micro-batching on
(``max_batch`` 8), ONNX Runtime with it off (``max_batch`` 1), eager PyTorch with it on. Against
each, :mod:`~layer6_serving.loadgen` sends a fixed number of requests at each concurrency level
(a closed loop: ``c`` clients, each sending its next request when its answer is in) to
``/v1/classify`` (PNG uploads of CIFAR-10-sized images), ``/v1/generate`` (streamed, server-sent
events) and ``/v1/sample`` (DDIM digits), while a sampler thread records the server process's
CPU and RSS (and GPU utilisation and memory through NVML when there is a GPU).

- **Errors**: every failure but 503, over all runs: must be 0. One more level sends more
  concurrent streams than the generator's slots + queue: the surplus must get 503 with
  ``Retry-After`` (``rejected``), the limit working, not an error.
- **The server agrees**: after each configuration, ``/metrics``' ``dlstack_http_requests_total``
  per route and status must equal the client's counts (``metrics_agree``).
- **Headline** (``requests_per_second``, ``p50_ms``, ``p99_ms``): the classifier, ONNX Runtime,
  batching on, at the highest concurrency level below the limit. ``first_token_ms``: the p50 time
  to the first streamed token of the GPT (ONNX, concurrency 1).
- **ONNX Runtime vs eager**: ``onnx_vs_eager_throughput`` is measured directly on the runtime
  (items/s of ``Classifier.predict`` on batches of 32, one intra-op thread each, as served),
  and beside it over HTTP (``http_onnx_vs_eager``: requests/s of the two servers at the top
  level).
"""

from __future__ import annotations

import asyncio
import time
from io import BytesIO
from typing import Any

import numpy as np

from layer0_math.lab import RunContext, deliverable, pyplot
from layer6_serving import loadgen
from layer6_serving.registry import ModelRegistry, default_root

NEEDED = ("gpt", "ddpm", "resnet")
MISSING = (
    "the load test serves the registry written by export_models, and {missing} is missing in "
    "{root}: run `make layer6` (or `python -m layer6_serving export_models`) first"
)
CONFIGS = {  # name -> (backend, max_batch)
    "onnx+batch": ("onnx", 8),
    "onnx": ("onnx", 1),
    "eager+batch": ("eager", 8),
}


@deliverable(
    quick={
        "registry": None,  # None: the default registry (runs/registry)
        "configs": list(CONFIGS),
        "levels": [1, 4, 16],
        "classify_requests": 400,
        "generate_requests": 32,
        "generate_levels": [1, 4],
        "max_tokens": 32,
        "sample_requests": 16,
        "sample_levels": [1, 4],
        "sample_steps": 10,
        "max_concurrency": 4,
        "max_queue": 32,
        "over_limit_extra": 12,  # streams beyond slots + queue in the 503 level
        "runtime_batch": 32,
        "runtime_seconds": 3.0,
        "threads": 1,
    },
    full={
        "classify_requests": 400,
        "generate_requests": 48,
        "sample_requests": 24,
        "levels": [1, 2, 4, 8, 16, 32],
        "runtime_seconds": 10.0,
    },  # fmt: skip
    headline=[
        "errors",
        "p50_ms",
        "p99_ms",
        "requests_per_second",
        "onnx_vs_eager_throughput",
        "first_token_ms",
        "metrics_agree",
    ],  # fmt: skip
)
def load_test(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.config
    registry = _registry(cfg["registry"])
    pngs = _test_pngs(registry.manifest("resnet")["preprocessing"], 64, ctx.seed)
    rows: list[dict[str, Any]] = []
    agree: dict[str, bool] = {}
    for name in ctx.progress(cfg["configs"], desc="server configurations"):
        backend, max_batch = CONFIGS[name]
        args = ["--registry", str(registry.root), "--backend", backend, "--max-batch",
                str(max_batch), "--max-concurrency", str(cfg["max_concurrency"]),
                "--max-queue", str(cfg["max_queue"]), "--reload-interval-s", "0",
                "--threads", str(cfg["threads"])]  # fmt: skip
        with open(ctx.path(f"server_{name.replace('+', '_')}.log"), "w") as log:
            with loadgen.ServerProcess(args, log=log) as server:
                got = _load_one(server, cfg, name, pngs)
                agree[name] = _agrees(server.url, got)
        rows += got
    ctx.write_json("levels.json", rows)
    runtime = _runtime_ratio(registry, cfg)
    out = _headline(rows, cfg, runtime) | {"metrics_agree": all(agree.values())}
    out["metrics_agree_by_config"] = agree
    _plot(ctx, rows)
    ctx.write_text("table.md", _table(rows))
    return out


def _registry(root: str | None) -> ModelRegistry:
    registry = ModelRegistry(root or default_root())
    missing = [n for n in NEEDED if n not in registry.names()]
    if missing:
        raise FileNotFoundError(MISSING.format(missing=", ".join(missing), root=registry.root))
    return registry


def _test_pngs(pre: dict[str, Any], n: int, seed: int) -> list[bytes]:
    """``n`` CIFAR-10 test images as PNG uploads (random images when the data is absent);
    ``pre`` the classifier manifest's preprocessing."""
    from PIL import Image

    from layer0_math.datasets import DatasetError
    from layer3_framework.data import ImageData

    try:
        data = ImageData(name="cifar10", shape=pre["shape"], classes=pre["classes"],
                         mean=pre["mean"], std=pre["std"], n_train=1, n_test=n)  # fmt: skip
        images = data.setup(seed).test.images.numpy().transpose(0, 2, 3, 1)
    except (DatasetError, OSError, ValueError):
        return loadgen.random_pngs(n, seed)
    out = []
    for image in images:
        buf = BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def _plan(cfg: dict[str, Any], name: str, pngs: list[bytes]) -> list[tuple]:
    """(endpoint, requests, concurrency, below_limit) of one configuration."""
    plan = [(loadgen.classify_endpoint(pngs), cfg["classify_requests"], c, True)
            for c in cfg["levels"]]  # fmt: skip
    if name == "onnx" and len(cfg["configs"]) > 1:
        return plan  # batching only touches classify: the other routes once per backend
    gen = loadgen.generate_endpoint(cfg["max_tokens"])
    plan += [(gen, cfg["generate_requests"], c, True) for c in cfg["generate_levels"]]
    plan += [(loadgen.sample_endpoint(cfg["sample_steps"]), cfg["sample_requests"], c, True)
             for c in cfg["sample_levels"]]  # fmt: skip
    over = cfg["max_concurrency"] + cfg["max_queue"] + cfg["over_limit_extra"]
    plan.append((gen, over, over, False))
    return plan


def _load_one(server, cfg: dict[str, Any], name: str, pngs: list[bytes]) -> list[dict]:
    rows = []
    headers = loadgen.api_headers()
    for endpoint, n, c, below in _plan(cfg, name, pngs):
        sampler = loadgen.ResourceSampler(server.pid, interval=0.1).start()
        result = asyncio.run(loadgen.run_level(server.url, endpoint, n, c, headers))
        rows.append(result.summary() | {"config": name, "below_limit": below,
                                        "resources": sampler.stop()})  # fmt: skip
    return rows


def _agrees(url: str, rows: list[dict]) -> bool:
    """The server's request counts per route and status equal the client's."""
    import httpx

    text = httpx.get(f"{url}/metrics", headers=loadgen.api_headers(), timeout=30).text
    for route in {r["endpoint"] for r in rows}:
        client: dict[str, int] = {}
        for r in rows:
            if r["endpoint"] == route:
                for status, n in r["by_status"].items():
                    client[status] = client.get(status, 0) + n
        if loadgen.request_counts(text, f"/v1/{route}") != client:
            return False
    return True


def _runtime_ratio(registry: ModelRegistry, cfg: dict[str, Any]) -> dict[str, float]:
    """Items/s of ``Classifier.predict`` at ``runtime_batch`` per backend, one thread each."""
    import torch

    from layer6_serving import runtime

    x = np.random.default_rng(0).random((cfg["runtime_batch"], 3, 32, 32), dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])
    try:
        speed = {}
        for backend in ("onnx", "eager"):
            model = runtime.load(registry, "resnet", backend=backend, threads=cfg["threads"])
            model.predict(x)  # warm-up
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < cfg["runtime_seconds"]:
                model.predict(x)
                n += len(x)
            speed[backend] = n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return speed


def _pick(rows, endpoint, config, level=None):
    found = [r for r in rows if r["endpoint"] == endpoint and r["config"] == config
             and r["below_limit"] and (level is None or r["concurrency"] == level)]  # fmt: skip
    return max(found, key=lambda r: r["concurrency"]) if found else None


def _headline(rows, cfg, runtime: dict[str, float]) -> dict[str, Any]:
    top = _pick(rows, "classify", "onnx+batch") or _pick(rows, "classify", cfg["configs"][0])
    eager = _pick(rows, "classify", "eager+batch", top["concurrency"])
    gen = _pick(rows, "generate", top["config"], min(cfg["generate_levels"]))
    over = [r for r in rows if not r["below_limit"]]
    return {
        "errors": sum(r["errors"] for r in rows),
        "p50_ms": top["p50_ms"],
        "p99_ms": top["p99_ms"],
        "requests_per_second": top["requests_per_second"],
        "headline_at": {
            "endpoint": "classify",
            "config": top["config"],
            "concurrency": top["concurrency"],
        },  # fmt: skip
        "onnx_vs_eager_throughput": runtime["onnx"] / runtime["eager"],
        "runtime_items_per_second": runtime,
        "http_onnx_vs_eager": (
            top["requests_per_second"] / eager["requests_per_second"] if eager else None
        ),  # fmt: skip
        "first_token_ms": gen["first_token_p50_ms"] if gen else None,
        "rejected_over_limit": sum(r["rejected"] for r in over),
        "over_limit_requests": sum(r["requests"] for r in over),
        "rejected_below_limit": sum(r["rejected"] for r in rows if r["below_limit"]),
    }


def _plot(ctx: RunContext, rows: list[dict]) -> None:
    plt = pyplot()
    endpoints = sorted({r["endpoint"] for r in rows})
    fig, axes = plt.subplots(1, len(endpoints), figsize=(5 * len(endpoints), 4), squeeze=False)
    for ax, endpoint in zip(axes[0], endpoints, strict=True):
        for config in dict.fromkeys(r["config"] for r in rows):
            pts = sorted((r["concurrency"], r["p50_ms"], r["p99_ms"]) for r in rows
                         if r["endpoint"] == endpoint and r["config"] == config
                         and r["below_limit"] and r["p50_ms"] is not None)  # fmt: skip
            if pts:
                c, p50, p99 = zip(*pts, strict=True)
                line = ax.plot(c, p50, "o-", label=f"{config} p50")[0]
                ax.plot(c, p99, "x--", color=line.get_color(), label=f"{config} p99")
        ax.set(xscale="log", yscale="log", xlabel="concurrent clients",
               ylabel="latency (ms)", title=f"/v1/{endpoint}")  # fmt: skip
        ax.legend(fontsize=7)
    fig.suptitle("Latency vs concurrency (loopback, closed loop)")
    ctx.savefig(fig, "latency_vs_concurrency.png")


def _table(rows: list[dict]) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:.1f}"

    lines = ["| endpoint | config | clients | requests | ok | 503 | errors | p50 ms | p95 ms | "
             "p99 ms | req/s | first token ms | server CPU % | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        res = r["resources"]
        lines.append(
            f"| {r['endpoint']} | {r['config']} | {r['concurrency']} | {r['requests']} | "
            f"{r['ok']} | {r['rejected']} | {r['errors']} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p95_ms'])} | {fmt(r['p99_ms'])} | {fmt(r['requests_per_second'])} | "
            f"{fmt(r['first_token_p50_ms'])} | {fmt(res['cpu_percent_mean'])} | "
            f"{fmt(res['rss_mb_max'])} |"
        )
    return "\n".join(lines) + "\n"
