"""``python -m layer6_serving serve`` and the settings: a missing registry or model, a backend a
model lacks, and a bad setting are one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import pytest

from layer6_serving.registry import ModelRegistry
from layer6_serving.service import Settings, cli
from tests.layer6.service_fakes import fake_registry


def _eager_registry(root) -> ModelRegistry:
    """Manifests that declare eager files (enough for the CLI's pre-flight check)."""
    reg = ModelRegistry(root)
    for kind, name in (("generator", "gpt"), ("denoiser", "ddpm"), ("classifier", "resnet")):
        reg.register(name, lambda d, k=kind: {"kind": k, "files": {"eager": {}}})
    return reg


def _serve(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_a_missing_registry_names_make_layer6(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DLSTACK_API_KEY", raising=False)
    code, err = _serve(capsys, "--registry", str(tmp_path / "none"))
    assert code == 2
    assert "make layer6" in err and "Traceback" not in err
    assert "gpt" in err  # names what is missing


def test_a_backend_the_model_lacks_is_refused(tmp_path, capsys):
    fake_registry(tmp_path)  # manifests with no files at all
    code, err = _serve(capsys, "--registry", str(tmp_path), "--backend", "onnx")
    assert code == 2 and "has no 'onnx' files" in err and "--backend" in err


def test_a_model_of_the_wrong_kind_is_refused(tmp_path, capsys):
    _eager_registry(tmp_path)
    code, err = _serve(capsys, "--registry", str(tmp_path), "--backend", "eager",
                       "--classifier", "gpt")  # fmt: skip
    assert code == 2 and "'generator' model, not a classifier" in err


def test_bad_settings_name_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DLSTACK_MAX_BATCH", "eight")
    code, err = _serve(capsys, "--registry", str(tmp_path))
    assert code == 2 and "DLSTACK_MAX_BATCH='eight' is not an integer" in err
    monkeypatch.delenv("DLSTACK_MAX_BATCH")
    code, err = _serve(capsys, "--registry", str(tmp_path), "--max-batch", "0")
    assert code == 2 and "max_batch=0: expected a number >= 1" in err


def test_settings_from_env_then_overrides(tmp_path):
    env = {
        "DLSTACK_MAX_BATCH": "16",
        "DLSTACK_CORS_ORIGINS": "https://a.example, https://b",
        "DLSTACK_REQUEST_TIMEOUT_S": "2.5",
        "DLSTACK_API_KEY": "s3cret-key",
        "DLSTACK_CLASSIFIER": "",
    }
    s = Settings.from_env(env, registry=tmp_path, max_batch=None, port=9000)
    assert (s.max_batch, s.request_timeout_s, s.port, s.api_key) == (16, 2.5, 9000, "s3cret-key")
    assert s.cors_origins == ("https://a.example", "https://b")
    assert s.models() == {"generator": "gpt", "denoiser": "ddpm"}  # "" turns the kind off
    assert "s3cret" not in repr(s)  # the key never shows in logs
    with pytest.raises(ValueError, match="backend 'tpu' is not one of"):
        Settings(registry=tmp_path, backend="tpu")
    with pytest.raises(ValueError, match="no model to serve"):
        Settings(registry=tmp_path, generator="", denoiser="", classifier="")


def test_the_cli_prints_the_url_and_the_models_then_runs_uvicorn(tmp_path, capsys, monkeypatch):
    import uvicorn

    fake = tmp_path / "registry"
    _eager_registry(fake)
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    code = cli.main(["--registry", str(fake), "--backend", "eager", "--port", "8123"])
    out = capsys.readouterr().out
    assert code == 0 and calls == [{"host": "127.0.0.1", "port": 8123, "log_level": "info"}]
    assert "gpt v1 (generator), ddpm v1 (denoiser), resnet v1 (classifier)" in out
    assert str(fake) in out and "http://127.0.0.1:8123/" in out
