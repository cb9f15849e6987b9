"""``python -m layer7_research run-experiment FOLDER``: the run half of the experiment template
(:func:`~layer7_research.experiments.scaffold.run_experiment`)."""

from layer7_research.experiments.scaffold import run_main as main

__all__ = ["main"]
