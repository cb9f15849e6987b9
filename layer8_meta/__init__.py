"""Layer 8: the research workspace over every layer below.

The run registry (SQLite, indexed from the manifests in ``runs/``), one-command reruns and
regression checks, the report, the docs site, the notebooks, the notes graph, the weekly
reflection log, literature triage and mastery mode. It imports every layer below and owns
nothing they need: it only reads what they leave in ``runs/`` and in the repository.
"""
