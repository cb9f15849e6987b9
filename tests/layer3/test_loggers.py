"""Loggers: JSONL records read back exactly; the composite fans out; W&B runs offline in the
run folder and honours WANDB_MODE."""

import pytest

from layer3_framework import (
    CompositeLogger,
    JsonlLogger,
    LoggerConfig,
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
