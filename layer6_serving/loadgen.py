"""A bounded load generator: a fixed number of requests at a fixed concurrency, loopback only.

    python -m layer6_serving loadgen --url http://127.0.0.1:8000 --endpoint classify \\
        --requests 200 --concurrency 1 4 16

``concurrency`` workers share one ``httpx.AsyncClient`` and take request numbers from a common
counter until ``requests`` have been sent: a closed loop (each worker sends its next request
when the previous answer is in), so the offered load is the concurrency, and the run stops by
itself. Every answer is recorded (status, seconds, and for a streamed generate the time to the
first ``token`` event); the summary gives p50/p95/p99 latency of the successful requests,
throughput (successful requests per second of wall time), ``errors`` (every failure but 503)
and ``rejected`` (the 503s a server answers above its concurrency limit, counted apart: they are
the limit working, not a fault).

Beside the load, :class:`ResourceSampler` samples the server process (psutil: CPU % of one
core, RSS) and, when NVML finds a GPU, its utilisation and memory. Only loopback hosts are
accepted: this tool must not be pointed at someone else's service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

LOOPBACK = ("127.0.0.1", "localhost", "::1")
REJECTED = 503


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash if its host is loopback, else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise ValueError(
            f"refusing {url!r}: the load generator only targets http(s) on loopback {LOOPBACK}"
        )
    return url.rstrip("/")


@dataclass
class Endpoint:
    """One route under load: ``make(i)`` gives request ``i``'s httpx keyword arguments."""

    name: str
    path: str
    make: Callable[[int], dict[str, Any]]
    stream: bool = False


@dataclass
class Record:
    status: int  # 0: no HTTP answer (connection error, timeout)
    seconds: float
    first_token_s: float | None = None


@dataclass
class LevelResult:
    endpoint: str
    concurrency: int
    wall_s: float
    records: list[Record] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Counts by status, latency percentiles (ms) of the 200s, throughput, TTFT p50."""
        statuses = Counter(r.status for r in self.records)
        ok = [r.seconds for r in self.records if r.status == 200]
        ttft = [r.first_token_s for r in self.records if r.first_token_s is not None]
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "concurrency": self.concurrency,
            "requests": len(self.records),
            "ok": statuses.get(200, 0),
            "rejected": statuses.get(REJECTED, 0),
            "errors": sum(n for s, n in statuses.items() if s not in (200, REJECTED)),
            "by_status": {str(s): n for s, n in sorted(statuses.items())},
            "wall_s": self.wall_s,
            "requests_per_second": len(ok) / self.wall_s if self.wall_s > 0 else 0.0,
        }
        for q in (50, 95, 99):
            out[f"p{q}_ms"] = float(np.percentile(ok, q) * 1000) if ok else None
        out["first_token_p50_ms"] = float(np.percentile(ttft, 50) * 1000) if ttft else None
        return out


async def _one(client, endpoint: Endpoint, i: int) -> Record:
    import httpx

    t0 = time.perf_counter()
    try:
        if not endpoint.stream:
            response = await client.post(endpoint.path, **endpoint.make(i))
            await response.aread()
            return Record(response.status_code, time.perf_counter() - t0)
        first = None
        async with client.stream("POST", endpoint.path, **endpoint.make(i)) as response:
            async for line in response.aiter_lines():
                if first is None and line == "event: token":
                    first = time.perf_counter() - t0
            return Record(response.status_code, time.perf_counter() - t0, first)
    except httpx.HTTPError:
        return Record(0, time.perf_counter() - t0)


async def run_level(
    url: str,
    endpoint: Endpoint,
    requests: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    timeout_s: float = 60.0,
) -> LevelResult:
    """``requests`` requests to ``endpoint`` from ``concurrency`` closed-loop workers."""
    import httpx

    if requests < 1 or concurrency < 1:
        raise ValueError(f"requests and concurrency must be >= 1, got {requests}, {concurrency}")
    base = check_loopback(url)
    counter = iter(range(requests))
    records: list[Record] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client) -> None:
        for i in counter:  # the shared iterator hands each number out once
            records.append(await _one(client, endpoint, i))

    async with httpx.AsyncClient(
        base_url=base, headers=headers or {}, timeout=timeout_s, limits=limits
    ) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return LevelResult(endpoint.name, concurrency, wall, records)


class ResourceSampler:
    """Samples process ``pid`` (CPU %, RSS) and the GPU (NVML, when present) every ``interval``
    seconds in a thread, between ``start()`` and ``stop()`` (which returns the summary)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        import psutil

        self.process, self.interval = psutil.Process(pid), interval
        self.cpu: list[float] = []
        self.rss: list[float] = []
        self.gpu_util: list[float] = []
        self.gpu_mem: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._nvml = _nvml_handle()

    def start(self) -> ResourceSampler:
        self.process.cpu_percent(None)  # the first call only sets the baseline
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.cpu.append(self.process.cpu_percent(None))
                self.rss.append(self.process.memory_info().rss / 2**20)
            except Exception:  # the process ended: nothing more to sample
                return
            if self._nvml is not None:
                import pynvml

                self.gpu_util.append(pynvml.nvmlDeviceGetUtilizationRates(self._nvml).gpu)
                self.gpu_mem.append(pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used / 2**20)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)

        def mean(v):
            return float(np.mean(v)) if v else None

        def peak(v):
            return float(np.max(v)) if v else None

        return {
            "samples": len(self.cpu),
            "cpu_percent_mean": mean(self.cpu),
            "cpu_percent_max": peak(self.cpu),
            "rss_mb_max": peak(self.rss),
            "gpu": self._nvml is not None,
            "gpu_util_percent_mean": mean(self.gpu_util),
            "gpu_mem_mb_max": peak(self.gpu_mem),
        }


def _nvml_handle():
    """NVML's handle of GPU 0, or None where there is no NVIDIA driver or GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetHandleByIndex(0) if pynvml.nvmlDeviceGetCount() else None
    except Exception:  # pynvml.NVMLError and a missing library: no GPU to sample
        return None


class ServerProcess:
    """``python -m layer6_serving serve ARGS`` on 127.0.0.1 and a free port, in a subprocess
    (its own CPU and memory, sampled apart from the client; ``env`` adds ``DLSTACK_*``
    settings), ready when entered (``/readyz`` 200 within ``ready_s``), terminated when left
    however the block ends."""

    def __init__(
        self, args: Sequence[str], ready_s: float = 180.0, log=None, env: dict | None = None
    ) -> None:
        self.args, self.ready_s, self.log = list(args), ready_s, log
        self.env = None if env is None else {**os.environ, **env}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self) -> ServerProcess:
        import subprocess

        import httpx

        cmd = [sys.executable, "-m", "layer6_serving", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", "warning", *self.args]  # fmt: skip
        out = self.log if self.log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + self.ready_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited with {self.proc.returncode}: {cmd}")
                try:
                    if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            raise RuntimeError(f"the server was not ready within {self.ready_s} s: {cmd}")
        except BaseException:
            self.__exit__()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_counts(metrics_text: str, route: str) -> dict[str, int]:
    """``{status: count}`` of ``dlstack_http_requests_total{route=...}`` in a /metrics text."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == "dlstack_http_requests_total" and s.labels.get("route") == route:
                status = s.labels["status"]
                counts[status] = counts.get(status, 0) + int(s.value)
    return counts


# ---- the standard endpoints ------------------------------------------------------------------


def classify_endpoint(pngs: Sequence[bytes]) -> Endpoint:
    """``/v1/classify`` with PNG uploads, cycling through ``pngs``."""
    return Endpoint(
        "classify",
        "/v1/classify",
        lambda i: {"files": {"file": ("image.png", pngs[i % len(pngs)], "image/png")}},
    )


def generate_endpoint(max_tokens: int, prompt: str = "Once upon a time") -> Endpoint:
    """``/v1/generate`` streamed (SSE), ``max_tokens`` tokens, a seed per request."""
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "stream": True}
    return Endpoint("generate", "/v1/generate", lambda i: {"json": body | {"seed": i}}, stream=True)


def sample_endpoint(steps: int, count: int = 1) -> Endpoint:
    """``/v1/sample``: ``count`` digits by ``steps`` DDIM steps, as arrays."""
    return Endpoint(
        "sample",
        "/v1/sample",
        lambda i: {"json": {"class": i % 10, "count": count, "steps": steps, "seed": i,
                            "format": "array"}},
    )  # fmt: skip


def random_pngs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` random 32x32 RGB PNGs (the CLI's classify traffic)."""
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buf = BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def api_headers() -> dict[str, str]:
    """The X-API-Key header from ``DLSTACK_API_KEY`` / ``DLSTACK_API_KEY_FILE`` (none if unset)."""
    from layer6_serving.service.security import load_api_key

    key = load_api_key(os.environ)
    return {"X-API-Key": key} if key else {}


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m layer6_serving loadgen", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", required=True, help="the service, on loopback")
    p.add_argument("--endpoint", choices=("classify", "generate", "sample"), action="append")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--max-tokens", type=int, default=32, help="generate: tokens per request")
    p.add_argument("--steps", type=int, default=10, help="sample: DDIM steps")
    p.add_argument("--pid", type=int, default=None, help="server process to sample (CPU, RSS)")
    args = p.parse_args(list(argv))
    try:
        url = check_loopback(args.url)
    except ValueError as e:
        print(f"loadgen: {e}", file=sys.stderr)
        return 2
    endpoints = {
        "classify": lambda: classify_endpoint(random_pngs(16)),
        "generate": lambda: generate_endpoint(args.max_tokens),
        "sample": lambda: sample_endpoint(args.steps),
    }
    for name in args.endpoint or ["classify"]:
        for c in args.concurrency:
            sampler = ResourceSampler(args.pid).start() if args.pid else None
            result = asyncio.run(run_level(url, endpoints[name](), args.requests, c, api_headers()))
            row = result.summary() | ({"resources": sampler.stop()} if sampler else {})
            print(json.dumps(row))
    return 0
