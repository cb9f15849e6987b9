"""Checkpoints: an exact round trip of model, optimizer, scheduler; completeness by sidecar;
no pickle loading anywhere in the package."""

import json
import re
from pathlib import Path

import pytest
import torch

import layer3_framework
from layer3_framework import latest_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
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
