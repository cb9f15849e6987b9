"""The study: Optuna's record of a sweep, kept in a database so that several processes, or several
machines, work on one search.

**TPE** (the Tree-structured Parzen Estimator, Bergstra et al. 2011) is the sampler. After
``n_startup_trials`` random trials it splits the finished trials at the γ-quantile of their values
into good and bad, fits a density to each, ``l(θ)`` (good) and ``g(θ)`` (bad), one Parzen window
per parameter, and proposes the candidate θ (of ``n_ei_candidates`` drawn from ``l``) that
maximises ``l(θ)/g(θ)``, which is the θ of greatest expected improvement under its model. With
several workers, ``constant_liar=True`` counts the trials still running as bad ones, so two
workers asking at once are not sent to the same point.

**Shared through a database.** A study lives in an Optuna storage: here SQLite,
``sqlite:///<run dir>/study.db`` (a PostgreSQL or MySQL URL works the same across machines).
Everything a worker needs is in the database: the study's direction, its trials and their
intermediate values (the pruner reads the other workers' curves), and the :class:`SweepSpec`
(base config, search space, pruner settings) as a study user attribute. So a worker is only a
storage URL and a study name (:mod:`layer5_training.tuning.workers`); the coordinator creates the
study once (``load_if_exists=True``: creating it again reopens it), then any number of workers
join. Samplers are per process: worker ``i`` seeds its TPE with ``seed + i``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from layer5_training.tuning.pruning import median_pruner
from layer5_training.tuning.search_space import check_space

SPEC_ATTR = "sweep_spec"
DIRECTIONS = ("minimize", "maximize")
SQLITE_TIMEOUT_S = 60  # a worker waits this long for another's write lock before failing


class SweepError(ValueError):
    """A sweep cannot run as asked: a bad storage URL, no such study, a bad trial count."""


@dataclass
class SweepSpec:
    """What every trial of a study shares, stored in the study so any worker can rebuild it."""

    base: list[str]  # Hydra overrides of every trial (experiment, data subset, steps, eval_every)
    space: dict[str, Any]  # search space (layer5_training.tuning.search_space)
    trials_dir: str  # each trial's run folder is <trials_dir>/trial_<number>
    metric: str = "loss"  # the validation metric: pruned on eval/<metric>, returns test_<metric>
    direction: str = "minimize"
    seed: int = 0
    parent_id: str | None = None  # the run the trials belong to (the sweep deliverable)
    n_startup_trials: int = 8  # TPE: random trials before the model
    prune_startup_trials: int = 4  # MedianPruner: completed trials before it prunes
    prune_warmup_steps: int = 0  # MedianPruner: no pruning before this step

    def __post_init__(self) -> None:
        check_space(self.space)
        if self.direction not in DIRECTIONS:
            raise SweepError(f"direction={self.direction!r}; expected one of {DIRECTIONS}")


def check_trials(n: Any, what: str = "trials") -> int:
    """A positive trial (or worker) count, else a :class:`SweepError`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SweepError(f"{what}={n!r}: expected a whole number >= 1")
    return n


def storage(url: str) -> optuna.storages.RDBStorage:
    """The study database at ``url`` (e.g. ``sqlite:///runs/x/study.db``), checked first."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SweepError(
            f"storage URL {url!r} is not a database URL; expected e.g. sqlite:///path/study.db"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        return optuna.storages.RDBStorage(url)
    if not parsed.database:
        raise SweepError(f"storage URL {url!r} names no file; expected sqlite:///path/study.db")
    folder = Path(parsed.database).resolve().parent
    if not folder.is_dir():
        raise SweepError(f"storage URL {url!r}: the folder {folder} does not exist")
    return optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    )


def sampler(spec: SweepSpec, worker: int = 0) -> optuna.samplers.TPESampler:
    """Worker ``worker``'s TPE sampler (seed ``spec.seed + worker``)."""
    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            n_startup_trials=spec.n_startup_trials, seed=spec.seed + worker, constant_liar=True
        )


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    return median_pruner(spec.prune_startup_trials, spec.prune_warmup_steps)


def create_study(url: str, name: str, spec: SweepSpec) -> optuna.Study:
    """Create (or reopen: ``load_if_exists``) the study ``name`` at ``url``, holding ``spec``."""
    study = optuna.create_study(
        storage=storage(url),
        study_name=name,
        direction=spec.direction,
        sampler=sampler(spec),
        pruner=pruner(spec),
        load_if_exists=True,
    )
    study.set_user_attr(SPEC_ATTR, asdict(spec))
    return study


def load_study(url: str, name: str, worker: int = 0) -> tuple[optuna.Study, SweepSpec]:
    """A worker's view of an existing study: the study (its own seeded sampler) and its spec."""
    db = storage(url)
    try:
        attrs = db.get_study_user_attrs(db.get_study_id_from_name(name))
    except KeyError:
        known = [s.study_name for s in optuna.get_all_study_summaries(db)]
        raise SweepError(f"no study {name!r} in {url}; it holds {known}") from None
    if SPEC_ATTR not in attrs:
        raise SweepError(f"study {name!r} in {url} holds no {SPEC_ATTR} (not made by create_study)")
    spec = SweepSpec(**attrs[SPEC_ATTR])
    study = optuna.load_study(
        study_name=name, storage=db, sampler=sampler(spec, worker), pruner=pruner(spec)
    )
    return study, spec
