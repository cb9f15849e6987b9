"""Monitoring served inputs: summaries on fixed bins and their drift from the training data.

- :mod:`~layer6_serving.monitoring.drift`: the reference summary written into each registry
  manifest (:func:`~layer6_serving.monitoring.drift.reference_summary` for images,
  :func:`~layer6_serving.monitoring.drift.reference_summary_text` for prompts) and the drift
  statistic (PSI, with KS beside it) of a served window against it.
- :mod:`~layer6_serving.monitoring.monitor`: :class:`InputMonitor`, a sliding window of served
  inputs per model, exporting the drift as Prometheus gauges into the app's registry.
"""
