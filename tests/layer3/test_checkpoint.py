"""Checkpoints: an exact round trip of model, optimizer, scheduler; completeness by sidecar;
no pickle loading anywhere in the package."""

import json
import re
from pathlib import Path

import pytest
import torch

import layer3_framework
from layer3_framework import (
    EMA,
    Trainer,
    TrainerConfig,
    latest_checkpoint,
    load_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from layer3_framework.checkpoint import checkpoint_path, prune_checkpoints


def _trained(seed, tiny_cnn):
    torch.manual_seed(seed)
    model = tiny_cnn()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=10)
    for _ in range(3):
        model(torch.randn(4, 3, 8, 8)).square().mean().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    return model, opt, sched


def _assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert set(a) == set(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_round_trip_restores_model_optimizer_scheduler_exactly(tmp_path, tiny_cnn):
    model, opt, sched = _trained(0, tiny_cnn)
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        model=model,
        step=3,
        optimizer=opt,
        scheduler=sched,
        data_state={"epoch": 1, "position": 2},
        config={"lr": 0.01},
    )
    model2, opt2, sched2 = _trained(1, tiny_cnn)  # different state, same structure
    meta = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)
    _assert_same(model.state_dict(), model2.state_dict())
    _assert_same(opt.state_dict(), opt2.state_dict())
    _assert_same(sched.state_dict(), sched2.state_dict())
    assert meta["step"] == 3 and meta["data"] == {"epoch": 1, "position": 2}
    assert meta["config"] == {"lr": 0.01}
    sidecar = json.loads(Path(str(path) + ".json").read_text())
    assert sidecar["format"] == "dlstack-checkpoint/1"


def test_bfloat16_tensors_survive_bit_for_bit(tmp_path):
    model = torch.nn.Linear(3, 2).to(torch.bfloat16)
    path = save_checkpoint(tmp_path / "b.safetensors", model=model, step=0)
    tensors, _ = read_checkpoint(path)
    assert tensors["model.weight"].dtype == torch.bfloat16
    assert torch.equal(tensors["model.weight"], model.weight.detach())


def test_a_checkpoint_exists_only_once_its_sidecar_does(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, step), model=model, step=step)
    Path(str(checkpoint_path(tmp_path, 3)) + ".json").unlink()  # a crash between the two writes
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="incomplete"):
        read_checkpoint(checkpoint_path(tmp_path, 3))
    prune_checkpoints(tmp_path, keep=1)
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 2)
    assert not checkpoint_path(tmp_path, 1).exists()


def test_mismatched_model_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", model=torch.nn.Linear(2, 2), step=0)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_checkpoint(path, model=torch.nn.Linear(3, 2))


def test_package_never_unpickles():
    root = Path(layer3_framework.__file__).parent
    for src in root.rglob("*.py"):
        for call in re.findall(r"torch\.load\([^)]*\)", src.read_text()):
            assert "weights_only=True" in call, f"{src.name}: {call}"
        assert not re.search(r"import pickle|pickle\.load", src.read_text()), src.name


def _spec_run(tmp_path, tiny_cnn, hooks_fn=lambda task: []):
    torch.manual_seed(0)
    model = tiny_cnn()
    spec = {
        "target": "layer3_framework.ports.CifarCNN",
        "kwargs": {"in_channels": 3, "widths": [4, 8], "num_classes": 4, "image_size": 8},
        "preprocessing": {"mean": [0.5] * 3, "std": [0.25] * 3, "classes": list("abcd")},
    }
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))) for _ in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = TrainerConfig(max_steps=3, progress=False)
    tr = Trainer(model, opt, batches, cfg, ckpt_dir=tmp_path / "checkpoints", model_spec=spec)
    tr.hooks = hooks_fn(tr.task)
    tr.fit()
    return tr, spec


def test_load_model_rebuilds_from_the_checkpoint_alone(tmp_path, tiny_cnn, monkeypatch):
    tr, spec = _spec_run(tmp_path, tiny_cnn)
    monkeypatch.delenv("DLSTACK_DATA", raising=False)
    monkeypatch.setenv("DLSTACK_OFFLINE", "1")
    loaded = load_model(tmp_path)  # the run folder: its newest checkpoint
    assert not loaded.training and loaded.dlstack_spec["preprocessing"] == spec["preprocessing"]
    assert loaded.dlstack_spec["target"] == spec["target"]
    x = torch.randn(5, 3, 8, 8)
    tr.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), tr.model(x))


def test_load_model_can_take_the_ema_weights(tmp_path, tiny_cnn):
    tr, _ = _spec_run(tmp_path, tiny_cnn, lambda task: [EMA(task, decay=0.5)])
    loaded = load_model(tmp_path / "checkpoints", weights="ema")
    shadow = tr.hooks[0].shadow
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, shadow[f"model.{k}"]), k


@pytest.mark.parametrize("target", ["os.system", "subprocess.Popen", "CifarCNN", "torchx.Foo"])
def test_a_spec_outside_the_layers_and_torch_is_refused(tmp_path, target):
    with pytest.raises(ValueError, match="not a class inside a dlstack layer package"):
        save_checkpoint(
            tmp_path / "s.safetensors",
            model=torch.nn.Linear(1, 1),
            step=0,
            model_spec={"target": target},
        )


def test_a_checkpoint_without_spec_says_so(tmp_path):
    path = save_checkpoint(tmp_path / "n.safetensors", model=torch.nn.Linear(1, 1), step=0)
    with pytest.raises(ValueError, match="no model_spec"):
        load_model(path)
