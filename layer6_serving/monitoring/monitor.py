"""The input monitor: a sliding window of what a served model was given, and its drift.

Each served input becomes one summary **row** (:func:`~layer6_serving.monitoring.drift.image_rows`
per image, :func:`~layer6_serving.monitoring.drift.prompt_row` per prompt): integer bin counts
that add up to a summary. The monitor keeps the last ``window`` rows in a deque and their running
totals (a row's counts are added when it enters and subtracted when it leaves, so a report costs
the same at any window size and the integer totals never drift). After every observation the
window's summary is compared with the model's training reference
(:func:`~layer6_serving.monitoring.drift.compare`) and the results are set as Prometheus gauges
in the app's registry::

    dlstack_drift_psi{model, feature}       PSI of the window against the reference
    dlstack_drift_ks{model, feature}        KS distance on the same bins
    dlstack_drift_window_items{model}       images or prompts in the window
    dlstack_drift_observed_total{model}     images or prompts observed since start
    dlstack_input_channel_mean{model, channel}   the window's mean pixel value per channel

A model whose manifest has no reference (or the denoiser, whose input is a class label) is only
counted. On a hot reload :meth:`InputMonitor.set_reference` swaps the reference and keeps the
window: the traffic did not change, the yardstick did.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from layer6_serving.monitoring import drift


class _Gauges:
    """The monitor's metrics, created once per CollectorRegistry and shared by its monitors."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.psi = Gauge(
            "dlstack_drift_psi",
            "Population stability index of served inputs vs the training reference",
            ["model", "feature"],
            registry=registry,
        )
        self.ks = Gauge(
            "dlstack_drift_ks",
            "Kolmogorov-Smirnov distance of served inputs vs the training reference",
            ["model", "feature"],
            registry=registry,
        )
        self.window = Gauge(
            "dlstack_drift_window_items",
            "Served items (images or prompts) in the drift window",
            ["model"],
            registry=registry,
        )
        self.observed = Counter(
            "dlstack_drift_observed",
            "Served items (images or prompts) observed by the drift monitor",
            ["model"],
            registry=registry,
        )
        self.channel_mean = Gauge(
            "dlstack_input_channel_mean",
            "Mean pixel value of served images in the drift window, per channel",
            ["model", "channel"],
            registry=registry,
        )


_GAUGES: weakref.WeakKeyDictionary[CollectorRegistry, _Gauges] = weakref.WeakKeyDictionary()
_GAUGES_LOCK = threading.Lock()


def _gauges(registry: CollectorRegistry) -> _Gauges:
    with _GAUGES_LOCK:
        if registry not in _GAUGES:
            _GAUGES[registry] = _Gauges(registry)
        return _GAUGES[registry]


class InputMonitor:
    """Drift of one served model's inputs over the last ``window`` images or prompts."""

    def __init__(
        self,
        reference: dict[str, Any] | None,
        registry: CollectorRegistry,
        window: int = 1000,
        model: str = "model",
        version: int | None = None,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        self.model, self.window = model, window
        self._metrics = _gauges(registry)
        self._lock = threading.Lock()
        self._rows: deque[dict[str, np.ndarray]] = deque()
        self._totals: dict[str, np.ndarray] = {}
        self._observed = 0
        self._metrics.observed.labels(model=model)  # the series exists (0) before any traffic
        self.set_reference(reference, version)

    @property
    def kind(self) -> str | None:
        """``"images"``, ``"text"``, or None without a reference."""
        return self.reference["kind"] if self.reference else None

    def set_reference(self, reference: dict[str, Any] | None, version: int | None = None) -> None:
        """Compare against ``reference`` from now on (a hot reload); the window is kept unless
        the kind of input changes. An empty reference (``{}``) is none."""
        reference = reference or None
        if reference is not None and reference.get("kind") not in ("images", "text"):
            raise ValueError(
                f"reference kind must be 'images' or 'text', got {reference.get('kind')!r}"
            )
        with self._lock:
            if reference is None or (self._rows and reference["kind"] != self.kind):
                self._clear()
            self.reference, self.version = reference, version
            self._update_gauges()

    def observe_images(self, images: np.ndarray, probs: np.ndarray) -> None:
        """Add served images (N, 3, H, W) in [0, 1] and the model's probabilities (N, K)."""
        if self.kind != "images":
            self._count(len(images))
            return
        rows = drift.image_rows(images, probs)
        self._add([{k: v[i] for k, v in rows.items()} for i in range(len(rows["n_pixels"]))])

    def observe_prompt(self, ids: Sequence[int] | np.ndarray) -> None:
        """Add one served prompt's token ids."""
        if self.kind != "text":
            self._count(1)
            return
        self._add([drift.prompt_row(ids, self.reference["vocab_size"])])

    def report(self) -> dict[str, Any]:
        """The window's drift per feature (PSI, KS, counts, noise floor, status), JSON-ready."""
        with self._lock:
            observed = self._summary()
            out: dict[str, Any] = {
                "model": self.model,
                "version": self.version,
                "kind": self.kind,
                "window": self.window,
                "n_window": len(self._rows),
                "observed_total": self._observed,
                "thresholds": {"moderate": drift.PSI_MODERATE, "major": drift.PSI_MAJOR},
                "reference_n": self.reference["n"] if self.reference else 0,
            }
            if observed is None:
                return out | {
                    "features": {},
                    "max_psi": 0.0,
                    "max_feature": None,
                    "status": "no data",
                }
            if self.kind == "images":
                out["channel_mean"] = {
                    "reference": self.reference["channel_mean"],
                    "observed": observed["channel_mean"],
                }
            return out | drift.compare(self.reference, observed)

    # ---- the window ----------------------------------------------------------------------

    def _count(self, n: int) -> None:
        with self._lock:
            self._observed += n
        self._metrics.observed.labels(model=self.model).inc(n)

    def _add(self, rows: list[dict[str, np.ndarray]]) -> None:
        with self._lock:
            for row in rows[-self.window :]:
                self._rows.append(row)
                for key, value in row.items():
                    self._totals[key] = self._totals.get(key, 0) + value
                if len(self._rows) > self.window:
                    for key, value in self._rows.popleft().items():
                        self._totals[key] = self._totals[key] - value
            self._observed += len(rows)
            self._update_gauges()
        self._metrics.observed.labels(model=self.model).inc(len(rows))

    def _clear(self) -> None:
        self._rows.clear()
        self._totals = {}

    def _summary(self) -> dict[str, Any] | None:
        if not self._rows:
            return None
        if self.kind == "images":
            return drift.image_summary(self._totals, len(self._rows))
        return drift.text_summary(self._totals, len(self._rows), self.reference["vocab_size"])

    def _update_gauges(self) -> None:
        m = self._metrics
        m.window.labels(model=self.model).set(len(self._rows))
        observed = self._summary()
        if observed is None:
            return
        for name, f in drift.compare(self.reference, observed)["features"].items():
            m.psi.labels(model=self.model, feature=name).set(f["psi"])
            m.ks.labels(model=self.model, feature=name).set(f["ks"])
        if self.kind == "images":
            for channel, mean in zip(drift.CHANNELS, observed["channel_mean"], strict=True):
                m.channel_mean.labels(model=self.model, channel=channel).set(mean)
