"""Access control: an API key from the environment or a mounted secret, compared in constant time.

**Where the key lives.** Never in the repository or an image: ``DLSTACK_API_KEY`` holds it, or
``DLSTACK_API_KEY_FILE`` names a file holding it (how Docker/Kubernetes/Azure mount a secret:
the value never appears in ``env`` listings or the process table). Neither set: no key is
required (a local, loopback-only service). Both set: an error, so a forgotten variable cannot
silently win.

**How it is checked.** A client sends ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``
(what Prometheus' ``authorization`` scrape option sends). ``hmac.compare_digest`` takes the same
time wherever the first differing byte is, so response timing does not leak the key byte by
byte. A missing or wrong key is 401 with ``WWW-Authenticate`` and is counted in
``dlstack_auth_failures_total{reason}``.

**What is public.** The probes (``/healthz``, ``/readyz``) so an orchestrator can check the
container, and the static page and API docs (``/``, ``/static/*``, ``/docs``, ``/openapi.json``),
which hold no model output or server state: the page asks for the key and sends it with every
call it makes. Every other route (``/v1/*``, ``/metrics``, ``/admin/*``) needs the key.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/", "/docs", "/docs/oauth2-redirect",
                          "/openapi.json", "/favicon.ico"})  # fmt: skip
PUBLIC_PREFIXES = ("/static/",)


def load_api_key(env: Mapping[str, str] | None = None) -> str | None:
    """The key from ``DLSTACK_API_KEY`` or the file ``DLSTACK_API_KEY_FILE`` names; else None."""
    env = os.environ if env is None else env
    value, path = env.get("DLSTACK_API_KEY"), env.get("DLSTACK_API_KEY_FILE")
    if value and path:
        raise ValueError("set DLSTACK_API_KEY or DLSTACK_API_KEY_FILE, not both")
    if path:
        try:
            value = Path(path).read_text().strip()
        except OSError as e:
            raise ValueError(
                f"DLSTACK_API_KEY_FILE={path!r} cannot be read ({e.strerror})"
            ) from None
        if not value:
            raise ValueError(f"DLSTACK_API_KEY_FILE={path!r} is empty: expected the API key")
    return value or None


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a key."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries (``X-API-Key`` or ``Authorization: Bearer``), if any."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def check_key(expected: str | None, presented: str | None) -> str | None:
    """``None`` when access is granted, else the reason (``"missing"`` or ``"wrong"``)."""
    if expected is None:
        return None
    if presented is None:
        return "missing"
    ok = hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
    return None if ok else "wrong"
