"""``python -m layer6_serving serve``: start the service with uvicorn (``make serve``).

Before starting it checks that the registry holds every model it is asked to serve, in the
chosen backend, so a missing model is one clear line naming the command that makes it (``make
layer6``) and exit status 2, not a traceback from a worker. Every option also has an environment
variable (``--max-batch`` / ``DLSTACK_MAX_BATCH``; see :mod:`~layer6_serving.service.settings`);
the API key only comes from ``DLSTACK_API_KEY`` or ``DLSTACK_API_KEY_FILE``.
"""

from __future__ import annotations

import argparse
import sys

from layer6_serving.registry import ModelRegistry, RegistryError
from layer6_serving.runtime import BACKENDS, QUANTIZED
from layer6_serving.service.settings import Settings

MAKE_HINT = "run `make layer6` (or `python -m layer6_serving export`) to export the models"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m layer6_serving serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0 = any free port)")
    p.add_argument("--registry", help="model registry folder (default runs/registry)")
    p.add_argument("--backend", choices=(*BACKENDS, QUANTIZED), help="runtime (default onnx)")
    for kind in ("generator", "denoiser", "classifier"):
        p.add_argument(f"--{kind}", help=f"registry name of the {kind} ('' = do not serve one)")
    p.add_argument("--max-batch", type=int, help="classify micro-batch size (1 = off)")
    p.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill")
    p.add_argument("--max-queue", type=int, help="queued requests per model before 503")
    p.add_argument("--max-concurrency", type=int, help="generations/samplings at once")
    p.add_argument("--request-timeout-s", type=float, help="504 past this many seconds")
    p.add_argument("--max-body-bytes", type=int, help="413 past this request body size")
    p.add_argument("--reload-interval-s", type=float, help="registry poll period (0 = off)")
    p.add_argument("--threads", type=int, help="intra-op threads per model")
    p.add_argument("--cors-origin", action="append", dest="cors_origins",
                   help="an extra origin allowed to call the API (repeatable)")  # fmt: skip
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


def check_models(settings: Settings) -> list[str]:
    """What each served model resolves to (``name vN (kind)``); RegistryError when one is
    missing, the wrong kind, or lacks the backend."""
    registry = ModelRegistry(settings.registry)
    found = []
    for kind, name in settings.models().items():
        manifest = registry.manifest(name)
        if manifest.get("kind") != kind:
            raise RegistryError(f"{name} in {registry.root} is a {manifest.get('kind')!r} model, "
                                f"not a {kind}")  # fmt: skip
        files = manifest.get("files", {})
        if settings.backend not in files:
            raise RegistryError(f"{name} v{manifest['version']} has no {settings.backend!r} "
                                f"files (it has {sorted(files)}): choose --backend")  # fmt: skip
        found.append(f"{name} v{manifest['version']} ({kind})")
    return found


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    log_level = args.pop("log_level")
    try:
        settings = Settings.from_env(**args)
    except ValueError as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
    try:
        found = check_models(settings)
    except RegistryError as e:
        hint = "" if "make layer6" in str(e) else f"\nserve: {MAKE_HINT}"
        print(f"serve: {e}{hint}", file=sys.stderr)
        return 2
    import uvicorn

    from layer6_serving.service.app import create_app

    print(f"serving {', '.join(found)} from {settings.registry} with the {settings.backend} "
          "backend")  # fmt: skip
    key = "required (X-API-Key)" if settings.api_key else "not required (no DLSTACK_API_KEY)"
    print(f"API key {key}; page http://{settings.host}:{settings.port}/ , API docs /docs",
          flush=True)  # fmt: skip
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)
    return 0
