"""The best trial as a config file, and the one command that trains it again.

A trial is ``compose(overrides)`` of the pipeline's configs; the best trial's overrides (a user
attribute of the trial) composed again give its whole config, written as ``best_config.yaml``: a
primary config of its own (no defaults list), with a ``hydra:`` node that puts the run where
layer 3's runs go. Then::

    python -m layer3_framework.train --config-path <dir> --config-name best_config

trains it again, with any override after it (``trainer.max_steps=5000``, ``data.n_train=null``).
On CPU with the same thread count, the run is bit-for-bit the trial (same seed, same data order),
so the re-run's metric equals the study's best value.
"""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from layer3_framework.train import compose

NAME = "best_config"
HYDRA = {
    "run": {"dir": "${dlstack_runs:}/layer3_framework/train/${now:%Y%m%d-%H%M%S-%f}"},
    "job": {"chdir": False},
}


def write_best_config(study: optuna.Study, folder: Path) -> Path:
    """``<folder>/best_config.yaml``: the full composed config of the study's best trial."""
    overrides = study.best_trial.user_attrs["overrides"]
    cfg = OmegaConf.to_container(compose(overrides), resolve=False)
    path = Path(folder) / f"{NAME}.yaml"
    header = (
        f"# The best trial (number {study.best_trial.number}, value {study.best_value!r}) of "
        f"study {study.study_name!r}, composed from:\n#   {' '.join(overrides)}\n"
        f"# Train it again:\n#   {' '.join(rerun_command(path))}\n"
    )
    path.write_text(header + OmegaConf.to_yaml(OmegaConf.create({**cfg, "hydra": HYDRA})))
    return path


def rerun_command(path: Path, *overrides: str) -> list[str]:
    """The command that trains the config at ``path`` again (``overrides`` appended)."""
    path = Path(path).resolve()
    return [
        *(sys.executable, "-m", "layer3_framework.train"),
        *("--config-path", str(path.parent), "--config-name", path.stem, *overrides),
    ]
