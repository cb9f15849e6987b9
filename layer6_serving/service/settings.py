"""The service's settings: one frozen dataclass, read from the environment and the command line.

Every knob the service has is here, with its default and the environment variable that sets it
(``DLSTACK_<NAME>``, e.g. ``DLSTACK_MAX_BATCH=16``); the command line (``serve --max-batch 16``)
overrides the environment. Values are checked once, when the settings are made, so a bad one is
an error naming the variable and the expected range before any model is loaded.

The API key is not a setting one types: it comes from ``DLSTACK_API_KEY`` or from the file named
by ``DLSTACK_API_KEY_FILE`` (a mounted secret), see :mod:`~layer6_serving.service.security`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layer6_serving.registry import default_root
from layer6_serving.runtime import BACKENDS, KINDS, QUANTIZED

DEFAULT_MODELS = {"generator": "gpt", "denoiser": "ddpm", "classifier": "resnet"}


@dataclass(frozen=True)
class Settings:
    """What the service serves and how; see the module docstring for where values come from."""

    registry: Path = field(default_factory=default_root)
    backend: str = "onnx"
    # which registry model serves each kind; "" turns that kind (and its route) off
    generator: str = DEFAULT_MODELS["generator"]
    denoiser: str = DEFAULT_MODELS["denoiser"]
    classifier: str = DEFAULT_MODELS["classifier"]
    api_key: str | None = field(default=None, repr=False)
    max_batch: int = 8  # micro-batch size for classify (1 = batching off)
    max_wait_ms: float = 5.0  # how long the first item of a batch waits for company
    max_queue: int = 64  # queued requests per model before 503 + Retry-After
    max_concurrency: int = 4  # generations / sample jobs running at once
    request_timeout_s: float = 30.0  # past this a request gets 504
    max_body_bytes: int = 1_000_000  # larger request bodies get 413
    max_upload_pixels: int = 1_000_000  # an image header declaring more is refused undecoded
    max_samples: int = 16  # the most digits one /v1/sample returns
    cors_origins: tuple[str, ...] = ()  # () = only the app's own page (same origin)
    reload_interval_s: float = 30.0  # registry poll period for new versions; 0 = off
    drift_window: int = 1000  # served inputs the drift monitor compares with the reference
    threads: int = 1  # intra-op threads per model runtime
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self) -> None:
        object.__setattr__(self, "registry", Path(self.registry))
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))
        _check(self)

    def models(self) -> dict[str, str]:
        """kind -> registry name of every kind that is served."""
        return {kind: getattr(self, kind) for kind in KINDS if getattr(self, kind)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``DLSTACK_*`` variables, then ``overrides`` (``None`` values ignored)."""
        from layer6_serving.service.security import load_api_key

        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f"DLSTACK_{f.name.upper()}"
            if f.name != "api_key" and var in env:
                values[f.name] = _parse(f.name, env[var], var)
        values["api_key"] = load_api_key(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


_INTS = {"max_batch", "max_queue", "max_concurrency", "max_body_bytes", "max_upload_pixels",
         "max_samples", "drift_window", "threads", "port"}  # fmt: skip
_FLOATS = {"max_wait_ms", "request_timeout_s", "reload_interval_s"}


def _parse(name: str, raw: str, var: str) -> Any:
    try:
        if name in _INTS:
            return int(raw)
        if name in _FLOATS:
            return float(raw)
    except ValueError:
        kind = "an integer" if name in _INTS else "a number"
        raise ValueError(f"{var}={raw!r} is not {kind}") from None
    if name == "cors_origins":
        return tuple(o.strip() for o in raw.split(",") if o.strip())
    return raw


_MINIMA = {"max_batch": 1, "max_queue": 1, "max_concurrency": 1, "max_body_bytes": 1,
           "max_upload_pixels": 1, "max_samples": 1, "drift_window": 1, "threads": 1,
           "max_wait_ms": 0, "reload_interval_s": 0, "port": 0}  # fmt: skip


def _check(s: Settings) -> None:
    if s.backend not in (*BACKENDS, QUANTIZED):
        raise ValueError(f"backend {s.backend!r} is not one of {(*BACKENDS, QUANTIZED)}")
    for name, low in _MINIMA.items():
        value = getattr(s, name)
        if not isinstance(value, int | float) or value < low:
            raise ValueError(f"setting {name}={value!r}: expected a number >= {low}")
    if not s.request_timeout_s > 0:
        raise ValueError(f"setting request_timeout_s={s.request_timeout_s!r}: expected > 0")
    if s.port > 65535:
        raise ValueError(f"setting port={s.port}: expected 0..65535")
    if not s.models():
        raise ValueError("no model to serve: generator, denoiser and classifier are all empty")
