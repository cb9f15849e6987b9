"""The one scratch training loop: its stop, its schedules (closed forms), torch's SGD and clipping,
a tiny model it must train, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from layer1_autograd import MLP, SGD, F, Tensor, Value
from layer1_autograd.manual_mlp import ManualMLP
from layer1_autograd.training import (
    EpochShuffler,
    HandGradients,
    NonFiniteLossError,
    ScalarSGD,
    clip_grad_norm,
    cosine,
    fit,
    linear_decay,
    one_cycle,
)


def _linear_loss(theta: Tensor, g: np.ndarray):
    """L(θ) = g·θ: the gradient is g at every step, so θ_T = θ_0 − g Σ_t η_t exactly."""
    return lambda step: (theta * Tensor(g)).sum()


# ------------------------------------------------------------------------ the non-finite stop
def test_a_planted_nan_stops_the_run_naming_the_step_and_the_last_finite_loss():
    theta = Tensor(np.zeros(3), requires_grad=True)
    opt = SGD([theta], lr=0.1)
    losses = [4.0, 3.0, 2.5, float("nan"), 1.0]

    def loss_fn(step):
        return (theta * 0.0).sum() + losses[step]

    with pytest.raises(NonFiniteLossError, match=r"at step 3 \(last finite loss 2.5 at step 2\)"):
        fit(loss_fn, opt, 5, name="planted")
    try:
        fit(loss_fn, SGD([Tensor(np.zeros(1), requires_grad=True)], lr=0.1), 5)
    except NonFiniteLossError as err:
        assert (err.step, err.last_finite) == (3, 2.5)
        assert math.isnan(err.loss) and err.history.losses == [4.0, 3.0, 2.5]
        assert isinstance(err, FloatingPointError)  # what callers caught before
    else:  # pragma: no cover - the raise above is the check
        pytest.fail("no NonFiniteLossError")


@pytest.mark.parametrize("bad", [float("inf"), -float("inf")])
def test_an_infinite_first_loss_stops_before_any_update(bad):
    theta = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(NonFiniteLossError, match="no finite loss before it"):
        fit(lambda s: (theta * bad).sum(), SGD([theta], lr=1.0), 3)
    np.testing.assert_array_equal(theta.data, 1.0)  # the bad step's update was not taken


# ------------------------------------------------------------------------ schedules
def test_schedules_match_their_closed_forms():
    t = 40
    cos = cosine(2.0, t)
    assert cos(0) == 2.0 and cos(t // 2) == pytest.approx(1.0) and cos(t) == pytest.approx(0.0)
    # Σ_{t<T} ½(1 + cos(πt/T)) = (T + 1)/2, because Σ_{t<T} cos(πt/T) = 1 for every T.
    assert sum(cos(s) for s in range(t)) == pytest.approx(2.0 * (t + 1) / 2)
    lin = linear_decay(1.0, t, decay=0.9)
    assert lin(0) == 1.0 and lin(t) == pytest.approx(0.1)
    assert sum(lin(s) for s in range(t)) == pytest.approx(t - 0.9 * (t - 1) / 2)
    oc = one_cycle(1.0, 100, warmup=0.1)
    lrs = [oc(s) for s in range(100)]
    assert lrs[9] == 1.0 and max(lrs) == 1.0 and lrs[0] == pytest.approx(0.1)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10], strict=False))  # rising
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # falling
    # warmup Σ (t+1)/R = (R+1)/2, decay Σ (T−t)/(T−R) = (T−R+1)/2: total (T+2)/2
    assert sum(lrs) == pytest.approx((100 + 2) / 2)


@pytest.mark.parametrize(
    ("schedule", "total_lr"),
    [
        (cosine(0.5, 30), 0.5 * 31 / 2),
        (one_cycle(0.5, 30, warmup=0.2), 0.5 * 32 / 2),
        (linear_decay(0.5, 30, decay=0.9), 0.5 * (30 - 0.9 * 29 / 2)),
        (None, 0.5 * 30),  # no schedule: the optimizer's own rate throughout
    ],
)
def test_the_loop_applies_the_schedule_at_every_step(schedule, total_lr):
    g = np.array([1.0, -2.0, 0.5])
    theta = Tensor(np.zeros(3), requires_grad=True)
    hist = fit(_linear_loss(theta, g), SGD([theta], lr=0.5), 30, schedule=schedule)
    np.testing.assert_allclose(theta.data, -g * total_lr, rtol=1e-12)
    assert sum(hist.lrs) == pytest.approx(total_lr)


@pytest.mark.parametrize(
    "make", [lambda: cosine(0.0, 5), lambda: one_cycle(1.0, 0), lambda: one_cycle(1.0, 5, 1.0)]
)
def test_bad_schedule_arguments_are_refused(make):
    with pytest.raises(ValueError, match="needs"):
        make()


def test_bad_loop_arguments_are_refused():
    theta = Tensor(np.zeros(1), requires_grad=True)
    with pytest.raises(ValueError, match="steps >= 1"):
        fit(_linear_loss(theta, np.ones(1)), SGD([theta], lr=0.1), 0)
    with pytest.raises(ValueError, match="clip_norm"):
        fit(_linear_loss(theta, np.ones(1)), SGD([theta], lr=0.1), 2, clip_norm=0.0)


# ------------------------------------------------------------------------ evaluation, hooks
def test_evaluations_come_every_k_steps_and_after_the_last_with_the_mean_loss_since():
    theta = Tensor(np.zeros(1), requires_grad=True)
    seen_grads = []
    hist = fit(
        lambda s: (theta * 0.0).sum() + float(s),
        SGD([theta], lr=0.1),
        7,
        evaluate=lambda done: {"val": 10.0 * done},
        eval_every=3,
        after_backward=lambda s: seen_grads.append(theta.grad.copy()),
    )
    assert hist.column("step") == [3, 6, 7]
    assert hist.column("train_loss") == [1.0, 4.0, 6.0]  # means of 0..2, 3..5, 6
    assert hist.columns()["val"] == [30.0, 60.0, 70.0]
    assert hist.losses == [float(s) for s in range(7)] and len(seen_grads) == 7


# ------------------------------------------------------------------------ optimizers, clipping
def test_clip_grad_norm_matches_torch():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 4)) * 5, rng.normal(size=7)]
    ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for o, t, g in zip(ours, theirs, grads, strict=True):
        o.grad = g.copy()
        t.grad = torch.tensor(g)
    norm = clip_grad_norm(ours, 2.0)
    ref = torch.nn.utils.clip_grad_norm_(theirs, 2.0)
    assert abs(norm - float(ref)) < 1e-9
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-9)


def test_the_loop_clips_before_the_update():
    g = np.array([3.0, 4.0])  # ‖g‖ = 5, clipped to 1
    theta = Tensor(np.zeros(2), requires_grad=True)
    fit(_linear_loss(theta, g), SGD([theta], lr=1.0), 1, clip_norm=1.0)
    np.testing.assert_allclose(theta.data, -g / 5.0, rtol=1e-6)


def test_scalar_sgd_on_values_matches_torch_sgd_with_momentum():
    """f(a, b) = (a·b − 1)² + a² on Values vs torch: same trajectory, momentum and decay on."""
    a, b = Value(1.5), Value(-0.5)
    ta = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    opt = ScalarSGD([a, b], lr=0.05, momentum=0.9, weight_decay=0.01)
    topt = torch.optim.SGD([ta, tb], lr=0.05, momentum=0.9, weight_decay=0.01)
    sched = cosine(0.05, 20)
    fit(lambda s: (a * b - 1.0) ** 2 + a * a, opt, 20, schedule=sched)
    for s in range(20):
        topt.param_groups[0]["lr"] = sched(s)
        topt.zero_grad()
        ((ta * tb - 1.0) ** 2 + ta * ta).backward()
        topt.step()
    assert a.data == pytest.approx(ta.item(), rel=1e-12)
    assert b.data == pytest.approx(tb.item(), rel=1e-12)


def test_hand_gradients_train_the_manual_mlp_as_autograd_trains_the_engine_mlp():
    """The manual MLP through the loop ends where the tensor-engine MLP ends (same init)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 784)), rng.integers(0, 10, 32)
    manual = ManualMLP.init((784, 16, 16, 10), rng=np.random.default_rng(3))
    manual = ManualMLP({n: a.astype(np.float64) for n, a in manual.params.items()})
    engine = MLP([784, 16, 16, 10], rng=np.random.default_rng(0), dtype=np.float64)
    engine.load_state_dict(manual.params)
    tensors = {n: Tensor(a, requires_grad=True) for n, a in manual.params.items()}

    def manual_loss(step):
        return HandGradients(*manual.loss_and_grads(x, y), tensors)

    kw = {"schedule": one_cycle(0.1, 10)}
    h1 = fit(manual_loss, SGD(list(tensors.values()), lr=0.1, momentum=0.9), 10, **kw)
    opt = SGD(engine.parameters(), lr=0.1, momentum=0.9)
    h2 = fit(lambda s: F.cross_entropy(engine(Tensor(x)), y), opt, 10, **kw)
    np.testing.assert_allclose(h1.losses, h2.losses, rtol=1e-10)
    for name, p in engine.named_parameters():
        np.testing.assert_allclose(manual.params[name], p.data, rtol=1e-9, atol=1e-12)
    with pytest.raises(KeyError, match="unknown parameters"):
        HandGradients(1.0, {"nope": np.zeros(1)}, tensors)


# ------------------------------------------------------------------------ data order
def test_epoch_shuffler_draws_one_permutation_per_epoch():
    sh = EpochShuffler(10, 4, np.random.default_rng(0))
    assert sh.steps_per_epoch == 3
    epoch = [sh.indices(s) for s in range(3)]
    assert [len(b) for b in epoch] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(epoch), np.random.default_rng(0).permutation(10))
    second = np.concatenate([sh.indices(s) for s in range(3, 6)])
    assert sorted(second) == list(range(10))
    dropped = EpochShuffler(10, 4, np.random.default_rng(0), drop_last=True)
    assert dropped.steps_per_epoch == 2 and len(dropped.indices(1)) == 4
    with pytest.raises(ValueError, match="batch_size=0"):
        EpochShuffler(10, 0, np.random.default_rng(0))


# ------------------------------------------------------------------------ a tiny model
def _train_blobs(seed: int, steps: int = 150):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.5]])
    y = rng.integers(0, 3, 300)
    x = centers[y] + 0.5 * rng.normal(size=(300, 2))
    model = MLP([2, 16, 3], activation="tanh", rng=rng, dtype=np.float64)
    shuffle = EpochShuffler(len(x), 32, rng)

    def loss_fn(step):
        idx = shuffle.indices(step)
        return F.cross_entropy(model(Tensor(x[idx])), y[idx])

    def evaluate(done):
        return {"loss": F.cross_entropy(model(Tensor(x)), y).item()}

    opt = SGD(model.parameters(), lr=0.2, momentum=0.9)
    return fit(loss_fn, opt, steps, schedule=cosine(0.2, steps), evaluate=evaluate, eval_every=50)


def test_the_loop_trains_a_tiny_classifier_below_a_stated_loss():
    """Three well-separated Gaussian blobs (centres ≥ 3.2σ-units apart): loss < 0.05 nats."""
    hist = _train_blobs(0)
    assert hist.evals[0]["loss"] > hist.evals[-1]["loss"]
    assert hist.evals[-1]["loss"] < 0.05, hist.evals


def test_a_run_is_deterministic_for_a_seed():
    a, b, c = _train_blobs(1, 40), _train_blobs(1, 40), _train_blobs(2, 40)
    assert a.losses == b.losses and a.evals == b.evals
    assert a.losses != c.losses
