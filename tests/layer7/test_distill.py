"""Hinton's distillation loss against scipy, its gradient against closed forms (the T² factor),
α = 0 against torch's cross-entropy, and the task under layer 3's trainer (teacher frozen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import log_softmax, softmax

from layer3_framework import Trainer, TrainerConfig
from layer7_research.efficient.distill import (
    DistillationTask,
    TeacherCache,
    distillation_loss,
    soft_target_loss,
)


def _logits(seed: int, b: int = 6, c: int = 10, scale: float = 3.0) -> torch.Tensor:
    return (
        torch.randn(b, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        * scale
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9, 1.0])
def test_loss_equals_scipy(temperature, alpha):
    z, v, y = _logits(0), _logits(1), torch.tensor([0, 3, 9, 2, 2, 5])
    loss, parts = distillation_loss(z, v, y, temperature, alpha)
    zs, vs = z.numpy() / temperature, v.numpy() / temperature
    q, log_q, log_p = softmax(vs, axis=1), log_softmax(vs, axis=1), log_softmax(zs, axis=1)
    kl = (q * (log_q - log_p)).sum(1).mean()  # KL(q ‖ p) per sample, batch mean
    ce = -log_softmax(z.numpy(), axis=1)[np.arange(6), y.numpy()].mean()
    expected = alpha * temperature**2 * kl + (1 - alpha) * ce
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert parts["soft"].item() == pytest.approx(temperature**2 * kl, rel=1e-5)


def test_alpha_zero_is_cross_entropy():
    z, v, y = _logits(2), _logits(3), torch.tensor([1, 1, 0, 7, 4, 9])
    loss, _ = distillation_loss(z, v, y, temperature=4.0, alpha=0.0)
    torch.testing.assert_close(loss, F.cross_entropy(z, y))


def _soft_grad(z: torch.Tensor, v: torch.Tensor, temperature: float) -> torch.Tensor:
    z = z.clone().requires_grad_()
    soft_target_loss(z, v, temperature).backward()
    return z.grad


@pytest.mark.parametrize("temperature", [1.0, 3.0, 10.0])
def test_soft_gradient_closed_form(temperature):
    z, v = _logits(4), _logits(5)
    p = softmax(z.numpy() / temperature, axis=1)
    q = softmax(v.numpy() / temperature, axis=1)
    # ∂(T² KL)/∂z = T² · (p − q)/T per sample, divided by B for the batch mean
    expected = temperature * (p - q) / z.shape[0]
    np.testing.assert_allclose(
        _soft_grad(z, v, temperature).numpy(), expected, rtol=1e-4, atol=1e-7
    )


def test_high_temperature_limit_matches_logit_matching():
    # zero-mean logits: for T ≫ |z|, ∂KL/∂z_i ≈ (z_i − v_i)/(N T²) before the T² factor
    z, v = _logits(6, c=10, scale=1.0), _logits(7, c=10, scale=1.0)
    z, v = z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True)

    def rel_err(t: float) -> float:
        grad_kl = _soft_grad(z, v, t) / t**2  # remove the factor
        expected = (z - v) / (n * t**2) / b
        return ((grad_kl - expected).norm() / expected.norm()).item()

    n, b = z.shape[1], z.shape[0]
    assert rel_err(100.0) < 0.02  # the approximation's error falls as O(|z|/T)
    assert rel_err(1.0) > 0.3  # and it is no approximation at T = 1


def test_t_squared_keeps_gradient_magnitude():
    z, v = _logits(8, scale=1.0), _logits(9, scale=1.0)
    with_factor = [_soft_grad(z, v, t).norm().item() for t in (4.0, 8.0, 16.0)]
    without = [(_soft_grad(z, v, t) / t**2).norm().item() for t in (4.0, 8.0, 16.0)]
    # with T²: about constant (the 1/T of the softmax and the 1/T of the slope cancel with T²)
    assert max(with_factor) / min(with_factor) < 1.3, with_factor
    # without: falls as 1/T² (16x from T = 4 to 16)
    assert without[0] / without[-1] == pytest.approx(16, rel=0.2), without


def test_bad_input_names_the_value():
    z = _logits(0)
    with pytest.raises(ValueError, match="temperature T=0"):
        distillation_loss(z, z, torch.zeros(6, dtype=torch.long), 0.0, 0.5)
    with pytest.raises(ValueError, match="alpha=1.5"):
        distillation_loss(z, z, torch.zeros(6, dtype=torch.long), 2.0, 1.5)
    with pytest.raises(ValueError, match="same shape"):
        soft_target_loss(z, z[:, :5], 2.0)


def _tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )


def test_task_trains_student_only_teacher_frozen_in_eval():
    teacher, student = _tiny_cnn(0), _tiny_cnn(1)
    teacher_before = {k: t.clone() for k, t in teacher.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 3, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g))] * 4
    task = DistillationTask(student, teacher, temperature=2.0, alpha=0.5)
    student_before = [p.clone() for p in student.parameters()]
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    cfg = TrainerConfig(max_steps=4, log_every=2, progress=False)
    trainer = Trainer(task, opt, data, cfg, eval_loader=data[:1])
    trainer.fit()
    assert not teacher.training and student.training
    for k, t in teacher.state_dict().items():  # BN running stats included: eval mode kept
        assert torch.equal(t, teacher_before[k]), k
    assert all(not p.requires_grad for p in teacher.parameters())
    assert any(
        not torch.equal(a, b) for a, b in zip(student_before, student.parameters(), strict=True)
    )
    assert trainer.model is student  # checkpoints rebuild the student
    # the task's loss is distillation_loss on the teacher's eval-mode logits
    x, y = data[0]
    loss, _ = task.training_step((x, y), 0)
    expected, _ = distillation_loss(student(x), teacher.eval()(x), y, 2.0, 0.5)
    torch.testing.assert_close(loss, expected)
    acc = trainer.evaluate()["accuracy"]
    assert acc == pytest.approx((student.eval()(x).argmax(1) == y).float().mean().item())


def test_teacher_cache_returns_the_teachers_logits_once_per_batch():
    teacher = _tiny_cnn(0).eval()
    cache = TeacherCache(teacher)
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    first, again = cache(x), cache(x.clone())
    other = cache(x + 1e-3)
    assert torch.equal(first, teacher(x).detach()) and torch.equal(again, first)
    assert not torch.allclose(other, first)
    assert (cache.hits, cache.misses) == (1, 2)
    task = DistillationTask(_tiny_cnn(1), teacher, cache=cache)
    y = torch.zeros(4, dtype=torch.long)
    loss, _ = task.training_step((x, y), 0)
    expected, _ = distillation_loss(task.student(x), teacher(x), y, 4.0, 0.9)
    torch.testing.assert_close(loss, expected)
    assert cache.hits == 2
    with pytest.raises(ValueError, match="another teacher"):
        DistillationTask(_tiny_cnn(1), _tiny_cnn(2), cache=cache)
