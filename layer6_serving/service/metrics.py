"""The service's Prometheus metrics, on a registry of its own.

Each app gets its own ``CollectorRegistry`` (not prometheus_client's global one), so two apps in
one process (tests, a load test beside a server) never mix their counts, and ``/metrics`` shows
exactly this app. Other parts of the service add their gauges to the same registry
(``ServiceMetrics.registry``): the drift monitor's ``dlstack_drift_*`` gauges live there too.

What is measured, and why each is the shape it is:

=========================================  =========================================================
``dlstack_http_requests_total``            counter {route, method, status}: route is the template
                                           (``/v1/classify``), never the raw path, so a scanner
                                           cannot explode the label set
``dlstack_http_request_duration_seconds``  histogram {route}: seconds, Prometheus' base unit;
                                           ``histogram_quantile`` gives p50/p99 server-side
``dlstack_queue_depth``                    gauge {model}: requests waiting for a micro-batch
``dlstack_batch_size``                     histogram {model}: items per model call (1 = no
                                           batching happened)
``dlstack_inflight``                       gauge {kind}: generations / sample jobs running now
``dlstack_tokens_generated_total``         counter {model}
``dlstack_first_token_seconds``            histogram {model}: time to first streamed token
``dlstack_model_version``                  gauge {model, kind, backend}: the version served now
``dlstack_model_reloads_total``            counter {model, outcome}: ``swapped``, ``failed``
``dlstack_auth_failures_total``            counter {reason}: ``missing``, ``wrong``
=========================================  =========================================================
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Every metric of one app, registered on ``registry`` (a fresh one by default)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("dlstack_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=r)  # fmt: skip
        self.latency = Histogram("dlstack_http_request_duration_seconds",
                                 "Time from request to the end of the response",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.queue_depth = Gauge("dlstack_queue_depth", "Requests waiting for a micro-batch",
                                 ["model"], registry=r)  # fmt: skip
        self.batch_size = Histogram("dlstack_batch_size", "Items per batched model call",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.inflight = Gauge("dlstack_inflight", "Generation / sampling jobs running now",
                              ["kind"], registry=r)  # fmt: skip
        self.tokens = Counter("dlstack_tokens_generated", "Tokens generated", ["model"],
                              registry=r)  # fmt: skip
        self.first_token = Histogram("dlstack_first_token_seconds",
                                     "Time from request to the first generated token",
                                     ["model"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.model_version = Gauge("dlstack_model_version", "Registry version being served",
                                   ["model", "kind", "backend"], registry=r)  # fmt: skip
        self.reloads = Counter("dlstack_model_reloads", "Hot reloads by outcome",
                               ["model", "outcome"], registry=r)  # fmt: skip
        self.auth_failures = Counter("dlstack_auth_failures", "Requests refused with 401",
                                     ["reason"], registry=r)  # fmt: skip

    def render(self) -> bytes:
        """The Prometheus text exposition of everything on the registry."""
        return generate_latest(self.registry)
