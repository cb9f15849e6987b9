"""Resume hardening: config changes a resume may take are applied and recorded, others refused by
name; damaged checkpoints are named and skipped for the previous good one; a finished run says so;
a two-optimizer task with its own random generator and an EMA resumes bit for bit."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework import EMA, CheckpointError, ResumeError, Task, Trainer, TrainerConfig
from layer3_framework.checkpoint import checkpoint_path, read_checkpoint
from layer3_framework.ports import MLP


def _config(lr=0.1, batch_size=4, max_steps=4, hidden=5):
    return {
        "seed": 0,
        "model": {"hidden": hidden},
        "data": {"batch_size": batch_size, "num_workers": 0},
        "optim": {"lr": lr},
        "trainer": {"max_steps": max_steps, "log_every": 2},
        "logger": {"name": "jsonl"},
        "resume": None,
    }


def _trainer(tmp_path, config, **cfg):
    torch.manual_seed(0)
    hidden = config["model"]["hidden"]
    model = MLP([3, hidden, 2])
    opt = torch.optim.SGD(model.parameters(), lr=config["optim"]["lr"])
    g = torch.Generator().manual_seed(0)
    bs = config["data"]["batch_size"]
    batches = [(torch.randn(bs, 3, generator=g), torch.randint(0, 2, (bs,), generator=g))] * 3
    cfg = {"max_steps": config["trainer"]["max_steps"], "progress": False, **cfg}
    return Trainer(model, opt, batches, TrainerConfig(**cfg), ckpt_dir=tmp_path, run_config=config)


@pytest.fixture
def finished(tmp_path):
    """A run that wrote checkpoints at steps 2 and 4 (of max_steps 4)."""
    _trainer(tmp_path, _config(), ckpt_every=2, keep_checkpoints=3).fit()
    return tmp_path


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lr": 0.2}, r"optim\.lr: 0\.1 -> 0\.2"),
        ({"batch_size": 8}, r"data\.batch_size: 4 -> 8"),
        ({"hidden": 6}, r"model\.hidden: 5 -> 6"),
    ],
)
def test_a_changed_optimisation_config_is_refused_by_name(finished, tmp_path, change, named):
    config = _config(max_steps=8, **change)
    tr = _trainer(tmp_path / "new", config)
    with pytest.raises(ResumeError, match=named):
        tr.resume(finished)


def test_allowed_changes_are_applied_and_recorded(finished, tmp_path):
    config = _config(max_steps=8)
    config["trainer"]["log_every"] = 1
    config["resume"] = str(finished)
    tr = _trainer(tmp_path / "new", config, log_every=1)
    assert tr.resume(finished) == 4
    changes = tr.resume_changes[-1]["changes"]
    assert changes == {
        "resume": [None, str(finished)],
        "trainer.log_every": [2, 1],
        "trainer.max_steps": [4, 8],
    }
    tr.fit()
    _, meta = read_checkpoint(checkpoint_path(tmp_path / "new", 8))
    assert meta["extra"]["resume_changes"][-1]["changes"] == changes


def test_resuming_a_finished_run_says_how_to_continue(finished, tmp_path):
    tr = _trainer(tmp_path / "new", _config())
    with pytest.raises(ResumeError, match="already finished at step 4.*raise trainer.max_steps"):
        tr.resume(finished)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda p: _truncate(p), "not a readable safetensors file"),
        (lambda p: Path(f"{p}.json").write_text("{garbage"), "not valid JSON"),
        (
            lambda p: Path(f"{p}.json").write_text(json.dumps({"format": "dlstack-checkpoint/1"})),
            "lacks the fields",
        ),
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    finished, tmp_path, damage, why
):
    damage(checkpoint_path(finished, 4))
    tr = _trainer(tmp_path / "new", _config(max_steps=8))
    with pytest.warns(UserWarning, match=f"step_00000004.safetensors: .*{why}"):
        assert tr.resume(finished) == 2
    assert tr.last_good_checkpoint == checkpoint_path(finished, 2)


def test_no_good_checkpoint_lists_each_file_and_why(finished, tmp_path):
    _truncate(checkpoint_path(finished, 4))
    Path(f"{checkpoint_path(finished, 2)}.json").write_text("[]")
    tr = _trainer(tmp_path / "new", _config(max_steps=8))
    with pytest.raises(CheckpointError, match="no good checkpoint") as e:
        tr.resume(finished)
    assert "step_00000004.safetensors: " in str(e.value)
    assert "step_00000002.safetensors: " in str(e.value)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        tr.resume(checkpoint_path(finished, 4))  # a file asked for by name: no fallback


def test_a_changed_model_shape_without_a_run_config_is_a_named_error(finished, tmp_path):
    model = MLP([3, 6, 2])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = Trainer(model, opt, [], TrainerConfig(max_steps=8, progress=False))
    with pytest.raises(CheckpointError, match=r"layers\.0\.weight: checkpoint \(5, 3\) vs model"):
        tr.resume(finished)


class NoisyGAN(Task):
    """Two optimizers, noise drawn from the task's own generator (diffusion-style), dropout."""

    def __init__(self):
        super().__init__()
        self.model = nn.Linear(2, 2).double()
        self.critic = nn.Sequential(nn.Dropout(0.2), nn.Linear(2, 1)).double()
        self.noise = torch.Generator().manual_seed(7)

    def get_extra_state(self):
        return self.noise.get_state()

    def set_extra_state(self, state):
        self.noise.set_state(state)

    def training_step(self, batch, step, optimizer):
        (real,) = batch
        z = torch.randn(real.shape, generator=self.noise, dtype=torch.float64)
        fake = self.model(z)
        if optimizer == "critic":
            return self.critic(fake.detach()).mean() - self.critic(real).mean(), {}
        return -self.critic(fake).mean(), {"fake_norm": fake.norm().detach()}


def _noisy(tmp_path, stop):
    torch.manual_seed(0)
    task = NoisyGAN()
    opts = {
        "critic": torch.optim.Adam(task.critic.parameters(), lr=0.01),
        "model": torch.optim.SGD(task.model.parameters(), lr=0.05, momentum=0.9),
    }
    sched = {"model": torch.optim.lr_scheduler.StepLR(opts["model"], 2, 0.5)}
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 2, generator=g, dtype=torch.float64) + 2,) for _ in range(3)]
    ema = EMA(task, decay=0.8, warmup=True)
    cfg = TrainerConfig(max_steps=stop, log_every=2, grad_accum=2, progress=False)
    return Trainer(task, opts, batches, cfg, scheduler=sched, ckpt_dir=tmp_path, hooks=[ema])


def test_a_two_optimizer_task_with_its_own_generator_and_ema_resumes_bit_for_bit(tmp_path):
    straight = _noisy(tmp_path / "a", 7)
    straight.fit()
    _noisy(tmp_path / "b", 3).fit()
    torch.manual_seed(99)
    second = _noisy(tmp_path / "c", 7)
    assert second.resume(tmp_path / "b") == 3
    second.fit()
    for (k, p), q in zip(
        straight.task.state_dict().items(), second.task.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), k
    for k, v in straight.hooks[0].shadow.items():
        assert torch.equal(v, second.hooks[0].shadow[k]), k
    assert straight.optimizers["model"].param_groups[0]["lr"] == 0.05 * 0.5**3
    assert second.optimizers["model"].param_groups[0]["lr"] == 0.05 * 0.5**3
    assert F.mse_loss(straight.task.model.weight, second.task.model.weight) == 0
