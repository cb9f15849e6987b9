"""Loggers: JSONL records read back exactly; the composite fans out; W&B runs offline in the
run folder and honours WANDB_MODE; an MLflow run in a local store reads back through MLflow's own
client with the params, metric history and end status that were logged."""

import math

import pytest

from layer3_framework import (
    CompositeLogger,
    JsonlLogger,
    LoggerConfig,
    MlflowLogger,
    WandbLogger,
    build_logger,
    read_jsonl,
)


def test_jsonl_and_composite(tmp_path):
    a, b = JsonlLogger(tmp_path / "a.jsonl"), JsonlLogger(tmp_path / "b.jsonl")
    log = CompositeLogger([a, b])
    log.log_metrics({"train/loss": 0.5, "lr": 0.1}, step=10)
    log.log_metrics({"train/loss": float("nan")}, step=20)
    log.close()
    expected = [{"step": 10, "train/loss": 0.5, "lr": 0.1}, {"step": 20, "train/loss": "nan"}]
    assert read_jsonl(tmp_path / "a.jsonl") == expected == read_jsonl(tmp_path / "b.jsonl")


def test_wandb_is_offline_inside_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    log = build_logger(LoggerConfig(backends=["jsonl", "wandb"]), tmp_path, config={"a": 1})
    wb = log.loggers[1]
    assert isinstance(wb, WandbLogger) and wb.mode == "offline"
    log.log_metrics({"x": 1.0}, step=1)
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert read_jsonl(tmp_path / "metrics.jsonl") == [{"step": 1, "x": 1.0}]


def test_wandb_mode_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log = WandbLogger(tmp_path)
    log.log_metrics({"x": 1.0}, step=1)
    log.close()
    assert not list(tmp_path.glob("wandb/offline-run-*"))
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="sometimes"):
        WandbLogger(tmp_path)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="tensorboard"):
        LoggerConfig(backends=["tensorboard"])


def _mlflow_run(logger):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=logger.tracking_uri)
    return client, client.get_run(logger.run_id)


@pytest.mark.slow  # creating the SQLite store runs MLflow's schema migrations (a few seconds)
def test_mlflow_run_reads_back_through_mlflows_client(tmp_path):
    config = {"optim": {"lr": 0.1, "name": "sgd"}, "trainer": {"max_steps": 3}, "tags": [1, 2]}
    logged = {1: {"train/loss": 2.5, "lr": 0.1}, 2: {"train/loss": 1.25}, 3: {"train/loss": 0.5}}
    with build_logger(
        LoggerConfig(backends=["jsonl", "mlflow"]), tmp_path, name="tiny", config=config
    ) as log:
        for step, metrics in logged.items():
            log.log_metrics(metrics, step)
    mlf = log.loggers[1]
    assert isinstance(mlf, MlflowLogger) and (tmp_path / "mlflow.db").is_file()
    client, run = _mlflow_run(mlf)
    assert run.data.params == {
        "optim.lr": "0.1",
        "optim.name": "sgd",
        "trainer.max_steps": "3",
        "tags": "[1, 2]",
    }
    history = client.get_metric_history(mlf.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, m["train/loss"]) for s, m in logged.items()]
    assert [(m.step, m.value) for m in client.get_metric_history(mlf.run_id, "lr")] == [(1, 0.1)]
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert client.get_experiment(run.info.experiment_id).name == "dlstack"
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3


@pytest.mark.slow
def test_mlflow_run_ends_with_the_status_of_the_block(tmp_path):
    uri = f"sqlite:///{tmp_path / 'shared.db'}"  # one store, several runs: they never mix
    statuses = {}
    for exc, folder in ((RuntimeError("boom"), "failed"), (KeyboardInterrupt(), "killed")):
        with pytest.raises(type(exc)), MlflowLogger(tmp_path / folder, tracking_uri=uri) as log:
            log.log_metrics({"loss": float("nan")}, step=1)
            raise exc
        client, run = _mlflow_run(log)
        statuses[folder] = run.info.status
        assert math.isnan(client.get_metric_history(log.run_id, "loss")[0].value)
    assert statuses == {"failed": "FAILED", "killed": "KILLED"}


def test_mlflow_store_must_be_local():
    with pytest.raises(ValueError, match="http://tracking.example:5000.*not a local store"):
        LoggerConfig(backends=["mlflow"], mlflow_uri="http://tracking.example:5000")


def test_logger_close_refuses_an_unknown_status(tmp_path):
    log = JsonlLogger(tmp_path / "a.jsonl")
    with pytest.raises(ValueError, match="'done'"):
        log.close("done")


@pytest.mark.slow
def test_the_pipeline_logs_to_mlflow_when_the_config_says_so(tmp_path):
    from mlflow.tracking import MlflowClient

    from layer3_framework.train import compose, run

    overrides = ["experiment=cifar10_cnn", "data.source=synthetic", "data.n_train=64"]
    overrides += ["data.n_test=32", "data.batch_size=16", "trainer.max_steps=3", "logger=mlflow"]
    metrics = run(compose(overrides), tmp_path / "run", progress=False)
    client = MlflowClient(f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (got,) = client.search_runs([client.get_experiment_by_name("dlstack").experiment_id])
    assert got.info.status == "FINISHED"
    assert got.data.params["trainer.max_steps"] == "3" and got.data.params["seed"] == "0"
    losses = [
        r["train/loss"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "train/loss" in r
    ]
    history = client.get_metric_history(got.info.run_id, "train/loss")
    assert [m.value for m in history] == losses and metrics["step"] == 3
