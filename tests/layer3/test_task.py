"""The task protocol: a GAN-like task with two alternating optimizers, a task with an auxiliary
loss, EMA, hooks, accumulation over nested batches and the standard Classification task, each
against a hand-written loop or a closed form (float64, CPU, exact where the arithmetic is the
same)."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from layer3_framework import EMA, Classification, Task, Trainer, TrainerConfig
from layer3_framework.ports import MLP


def _cfg(**kw):
    kw.setdefault("progress", False)
    return TrainerConfig(**kw)


class TinyGAN(Task):
    """1-D GAN: G(z) = a·z + b, D(x) = logit of "real". D steps every step, G every ``k``."""

    model_key = "generator"

    def __init__(self, k: int = 1) -> None:
        super().__init__()
        self.generator = nn.Linear(1, 1).double()
        self.discriminator = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
        self.k = k

    def d_loss(self, real, z):
        fake = self.generator(z).detach()
        ones, zeros = torch.ones_like(real), torch.zeros_like(real)
        return F.binary_cross_entropy_with_logits(
            self.discriminator(real), ones
        ) + F.binary_cross_entropy_with_logits(self.discriminator(fake), zeros)

    def g_loss(self, z):
        logits = self.discriminator(self.generator(z))
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def training_step(self, batch, step, optimizer):
        real, z = batch
        if optimizer == "d":
            return self.d_loss(real, z), {}
        return self.g_loss(z), {"fake_mean": self.generator(z).mean().detach()}

    def optimizer_order(self, step, names):
        return ("d", "g") if step % self.k == 0 else ("d",)


def _gan_batches(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            3.0 + 0.5 * torch.randn(8, 1, generator=g, dtype=torch.float64),
            torch.randn(8, 1, generator=g, dtype=torch.float64),
        )
        for _ in range(n)
    ]


def _gan_opts(task):
    d = torch.optim.SGD(task.discriminator.parameters(), lr=0.1, momentum=0.9)
    g = torch.optim.Adam(task.generator.parameters(), lr=0.05)
    return {"d": d, "g": g}, {"g": torch.optim.lr_scheduler.StepLR(g, step_size=2, gamma=0.5)}


def test_two_alternating_optimizers_equal_the_hand_written_loop():
    torch.manual_seed(0)
    task, ref = TinyGAN(k=2), TinyGAN(k=2)
    ref.load_state_dict(task.state_dict())
    batches = _gan_batches()
    opts, scheds = _gan_opts(task)
    tr = Trainer(task, opts, batches, _cfg(max_steps=6, log_every=3), scheduler=scheds)
    tr.fit()

    ref_opts, ref_scheds = _gan_opts(ref)
    d_losses = []
    for step, (real, z) in enumerate(batches):
        ref_opts["d"].zero_grad()
        loss = ref.d_loss(real, z)
        loss.backward()
        ref_opts["d"].step()
        d_losses.append(loss.item())
        if step % 2 == 0:  # G sees the D that just stepped
            ref_opts["g"].zero_grad()
            ref.g_loss(z).backward()
            ref_opts["g"].step()
            ref_scheds["g"].step()
    for (name, p), q in zip(task.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    logged = [h for h in tr.history if "train/loss/d" in h]
    assert [h["step"] for h in logged] == [3, 6]
    assert math.isclose(logged[0]["train/loss/d"], sum(d_losses[:3]) / 3, rel_tol=1e-12)
    assert "train/fake_mean" in logged[0] and logged[1]["train/lr/g"] == 0.05 * 0.5


class AuxTask(Task):
    """Regression plus an auxiliary penalty (an MoE's load-balancing loss stands in)."""

    def __init__(self, alpha=0.3):
        super().__init__()
        self.model = nn.Linear(3, 2).double()
        self.alpha = alpha

    def losses(self, batch):
        x, y = batch
        out = self.model(x)
        return F.mse_loss(out, y), out.softmax(-1).square().mean()

    def training_step(self, batch, step, optimizer):
        main, aux = self.losses(batch)
        return main + self.alpha * aux, {"aux": aux.detach()}


def test_auxiliary_loss_gradient_is_the_gradient_of_the_sum():
    torch.manual_seed(0)
    task = AuxTask()
    batch = (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64))
    main, aux = task.losses(batch)
    grads = torch.autograd.grad(main + task.alpha * aux, list(task.parameters()))
    expected = [p.detach() - g for p, g in zip(task.parameters(), grads, strict=True)]
    tr = Trainer(task, torch.optim.SGD(task.parameters(), lr=1.0), [batch], _cfg(max_steps=1))
    final = tr.fit()
    for p, e in zip(task.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-15)
    assert math.isclose(final["train/aux"], aux.item(), rel_tol=1e-12)
    assert math.isclose(final["train/loss"], (main + task.alpha * aux).item(), rel_tol=1e-12)


def test_ema_follows_the_closed_form_with_warmup_and_evaluates_with_the_average():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    snapshots = [{k: v.clone() for k, v in model.state_dict().items()}]
    ema = EMA(model, decay=0.9, warmup=True)
    record = lambda trainer: snapshots.append(  # noqa: E731
        {k: v.clone() for k, v in model.state_dict().items()}
    )
    batches = [(torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 2, (4,)))] * 7
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tr = Trainer(model, opt, batches, _cfg(max_steps=7), hooks=[record, ema])
    tr.fit()
    expected = dict(snapshots[0])
    for t, theta in enumerate(snapshots[1:]):
        d = min(0.9, (1 + t) / (10 + t))  # θ_ema ← d θ_ema + (1 − d) θ
        expected = {k: d * expected[k] + (1 - d) * theta[k] for k in theta}
    for k, v in expected.items():
        torch.testing.assert_close(ema.shadow[k], v, rtol=0, atol=1e-14)

    own = {k: v.clone() for k, v in model.state_dict().items()}
    averaged = nn.Linear(3, 2).double()
    averaged.load_state_dict(ema.shadow)
    ema.use_for_eval = True
    got = tr.evaluate(batches[:1])
    want = Trainer(averaged, opt, [], _cfg(max_steps=1)).evaluate(batches[:1])
    assert got == want
    assert all(torch.equal(own[k], v) for k, v in model.state_dict().items())  # swapped back


def test_hooks_run_once_per_step_in_order():
    calls = []
    hooks = [lambda tr: calls.append(("a", tr.step)), lambda tr: calls.append(("b", tr.step))]
    model = MLP([2, 2])
    batches = [(torch.randn(3, 2), torch.randint(0, 2, (3,)))] * 3
    Trainer(
        model, torch.optim.SGD(model.parameters(), lr=0.1), batches, _cfg(max_steps=3), hooks=hooks
    ).fit()
    assert calls == [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3), ("b", 3)]


class DictRegression(Task):
    """A task on dict batches (moved to the device by the trainer, nested as given)."""

    model_key = "net"

    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1).double()

    def training_step(self, batch, step, optimizer):
        return F.mse_loss(self.net(batch["inputs"]["x"]), batch["y"]), {}


def test_accumulation_with_a_task_equals_the_big_batch_gradient():
    g = torch.Generator().manual_seed(0)
    xs = torch.randn(4, 8, 4, generator=g, dtype=torch.float64)
    ys = torch.randn(4, 8, 1, generator=g, dtype=torch.float64)
    big = [{"inputs": {"x": x}, "y": y} for x, y in zip(xs, ys, strict=True)]
    halves = [
        {"inputs": {"x": b["inputs"]["x"][i : i + 4]}, "y": b["y"][i : i + 4]}
        for b in big
        for i in (0, 4)
    ]
    a, b = DictRegression(), DictRegression()
    b.load_state_dict(a.state_dict())
    Trainer(a, torch.optim.SGD(a.parameters(), lr=0.1), big, _cfg(max_steps=4)).fit()
    tr = Trainer(
        b, torch.optim.SGD(b.parameters(), lr=0.1), halves, _cfg(max_steps=4, grad_accum=2)
    )
    tr.fit()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)
    assert tr.samples_seen == 32 and tr.model is b.net


def test_classification_reproduces_the_hand_loop_and_exact_eval_sums():
    torch.manual_seed(0)
    model, ref = MLP([5, 7, 3]), MLP([5, 7, 3])
    ref.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(6, 5, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(4)
    ]
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tr = Trainer(model, opt, batches, _cfg(max_steps=4, log_every=4))
    assert isinstance(tr.task, Classification) and tr.model is model
    final = tr.fit()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for x, y in batches:
        loss = F.cross_entropy(ref(x), y)
        loss.backward()
        ref_opt.step()
        ref_opt.zero_grad()
        losses.append(loss.detach())
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)
    assert final["train/loss"] == torch.stack(losses).sum().item() / 4
    with torch.no_grad():
        loss_sum = sum(F.cross_entropy(ref(x), y, reduction="sum").double() for x, y in batches)
        correct = sum((ref(x).argmax(-1) == y).sum() for x, y in batches)
    metrics = tr.evaluate(batches)
    assert metrics == {"loss": loss_sum.item() / 24, "accuracy": correct.item() / 24}
