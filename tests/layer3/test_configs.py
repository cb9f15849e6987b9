"""Every config composes and runs a few steps: each file of configs/model, configs/data,
configs/optim (every sensible model x data pairing, with every optimizer) and configs/experiment,
on synthetic data of the real shapes. A new YAML file is picked up here without a new test.

A model runs with the classification task unless an experiment pairs it with another task (a
VAE with its ELBO, a denoiser with diffusion): then its pairings run with that task."""

import functools
import itertools
import json
import math

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

from layer3_framework.schema import ConfigError, missing_keys
from layer3_framework.train import CONFIG_DIR, check_config, compose, run

TINY = [
    "data.source=synthetic",
    "data.n_train=32",
    "data.n_test=16",
    "data.batch_size=16",
    "data.eval_batch_size=16",
    "trainer.max_steps=2",
    "trainer.log_every=1",
    "trainer.progress=false",
    "logger=jsonl",
]


def options(group: str) -> list[str]:
    found = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    assert found, f"configs/{group}/ is empty"
    return found


def tiny(overrides: list[str]) -> list[str]:
    """``overrides`` + TINY, with a short window when the data is text."""
    extra = ["data.seq_len=8"] if "seq_len" in compose(overrides).data else []
    return [*overrides, *TINY, *extra]


def fits(model: str, data: str) -> bool:
    """Whether the data supplies every size the model asks of it: the schema's rule (a model's
    ``???`` keys must be among its data module's ``SIZES``), read from the two groups composed
    once each (a Hydra compose per pair made collection cost ~20 s per xdist worker). Each pair
    kept is then composed whole and checked by ``check_config`` in the tests that run it."""
    sizes = get_class(_group_node("data", data)["_target_"]).SIZES
    return all(key in sizes for key in missing_keys(_group_node("model", model)))


@functools.cache
def _group_node(group: str, name: str) -> dict:
    """configs/<group>/<name>.yaml as composed (the other groups at their defaults)."""
    return OmegaConf.to_container(compose([f"{group}={name}"])[group], resolve=False)


@functools.cache
def _own_tasks() -> dict[str, tuple[str, frozenset[str]]]:
    """Model class -> (the task file, the data files) of the experiments that train it with a
    task other than classification: such a model runs with that task, on that data."""
    task_files = {compose([f"task={t}"]).task._target_: t for t in options("task")}
    data_files = {d: compose([f"data={d}"]).data for d in options("data")}
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for experiment in options("experiment"):
        cfg = compose([f"experiment={experiment}"])
        if cfg.task._target_ == CLASSIFICATION:
            continue
        data = {d for d, node in data_files.items() if node == cfg.data} or {
            d
            for d, node in data_files.items()
            if (node._target_, node.get("name")) == (cfg.data._target_, cfg.data.get("name"))
        }
        task, known = found.get(cfg.model._target_, (task_files[cfg.task._target_], frozenset()))
        found[cfg.model._target_] = (task, known | data)
    return found


def _model_class(model: str) -> str:
    """The class configs/model/<model>.yaml builds."""
    return _group_node("model", model)["_target_"]


def task_of(model: str) -> str:
    """The task an experiment trains ``model`` with (classification when none says otherwise)."""
    own = _own_tasks().get(_model_class(model))
    return own[0] if own else "classification"


def paired(model: str, data: str) -> bool:
    """A model with a task of its own pairs with its experiments' data; others with any data
    that supplies their sizes."""
    own = _own_tasks().get(_model_class(model))
    return (own is None or data in own[1]) and fits(model, data)


CLASSIFICATION = "layer3_framework.task.Classification"
PAIRS = [(m, d) for m, d in itertools.product(options("model"), options("data")) if paired(m, d)]
COMBOS = [(m, d, o) for (m, d), o in itertools.product(PAIRS, options("optim"))]


def test_every_model_and_every_dataset_has_a_partner():
    assert {m for m, _ in PAIRS} == set(options("model"))
    assert {d for _, d in PAIRS} == set(options("data"))


def test_a_model_that_does_not_fit_the_data_is_refused_before_building():
    with pytest.raises(ConfigError, match="needs vocab_size from the data"):
        check_config(compose(["model=charlm", "data=cifar10"]))


def _check_run(overrides: list[str], tmp_path) -> dict:
    cfg = compose(overrides)
    metrics = run(cfg, tmp_path)
    assert metrics["step"] == 2 and math.isfinite(metrics["train_loss"])
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test_"))
    if cfg.task._target_ == CLASSIFICATION:
        assert 0.0 <= metrics["test_accuracy"] <= 1.0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["kind"] == "train"
    assert manifest["config"]["model"]["_target_"] == cfg.model._target_
    assert "???" not in json.dumps(manifest["config"]["model"])  # sizes filled from the data
    return manifest


@pytest.mark.parametrize(("model", "data", "optim"), COMBOS)
def test_every_model_data_optim_combination_runs(model, data, optim, tmp_path):
    overrides = [f"model={model}", f"data={data}", f"optim={optim}", f"task={task_of(model)}"]
    _check_run(tiny(overrides), tmp_path)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_runs(experiment, tmp_path):
    _check_run(tiny([f"experiment={experiment}"]), tmp_path)
