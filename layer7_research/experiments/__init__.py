"""The learner's experiments: ``new-experiment NAME`` scaffolds ``experiments/NAME/`` (hypothesis,
config, a deliverable-style ``experiment(ctx)``, a failing test stub, a results section), and
``run-experiment experiments/NAME`` runs it in a layer-0 run record and fills the results.
The worked example is ``experiments/weight_decay_grokking/`` at the repository root."""

from layer7_research.experiments.scaffold import (
    check_name,
    fill_results,
    load_config,
    new_experiment,
    run_experiment,
)

__all__ = ["check_name", "fill_results", "load_config", "new_experiment", "run_experiment"]
