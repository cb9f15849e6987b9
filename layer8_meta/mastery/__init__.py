"""Mastery mode: run a layer's own tests against the learner's reimplementation of a module.

- :mod:`swap`: loads the learner's file as the reference module and rebinds the public names.
- :mod:`plugin`: the pytest plugin that makes the swap before test modules import, and counts.
- :mod:`cli`: ``test-mine`` (run, summarise, record in ``<runs>/mastery/progress.json``) and
  ``progress`` (the scorecard per layer, and whether the learner is ready for the next one).
- ``concepts.yaml``: the concepts a learner can reimplement: layer, target module, test files,
  and ``model: true`` for those that are a model at that level.
"""
