"""Stability measures against hand-built series and independent references: the spike counter
and divergence rule on series whose answers are known by construction, the gradient-norm
histogram against numpy.histogram, and ClipRecorder's recorded norm and applied update against
torch.nn.utils (the norm before clipping) and the closed-form bound ‖Δθ‖ ≤ η·c of clipped SGD."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from layer5_training.stability import (
    ClipRecorder,
    DivergenceGuard,
    LossDiverged,
    count_spikes,
    diverged,
    histogram_over_time,
    log_edges,
    spike_steps,
)


def test_spike_counter_on_a_hand_built_series():
    # a flat 1.0 baseline with a one-step spike at 30, a three-step spike at 50-52 and a
    # bump to 1.9 at 70 (below 2x the median): two spikes, four spike steps
    series = np.ones(100)
    series[30] = 2.5
    series[50:53] = 3.0
    series[70] = 1.9
    steps = spike_steps(series, ratio=2.0, window=10)
    assert np.flatnonzero(steps).tolist() == [30, 50, 51, 52]
    assert count_spikes(series, ratio=2.0, window=10) == 2


def test_the_spike_baseline_is_the_median_of_the_previous_window():
    # a rising series: L_t = 1.05^t never exceeds 2x the median of the previous 10 (1.05^5.5 ≈ 1.3)
    series = 1.05 ** np.arange(60)
    assert count_spikes(series, ratio=2.0, window=10) == 0
    series[40] = 2.01 * np.median(series[30:40])
    assert np.flatnonzero(spike_steps(series, 2.0, 10)).tolist() == [40]
    series[45] = math.nan  # a non-finite loss is a spike
    assert count_spikes(series, 2.0, 10) == 2


def test_divergence_rule():
    assert not diverged([2.3, 5.0, 6.8], factor=3.0)  # 6.8 < 3 x 2.3
    assert diverged([2.3, 5.0, 7.0], factor=3.0)  # 7.0 > 6.9
    assert diverged([2.3, math.inf], factor=3.0)
    assert diverged([2.3, math.nan, 1.0], factor=3.0)
    assert not diverged([], factor=3.0)
    with pytest.raises(ValueError, match="factor"):
        diverged([1.0], factor=1.0)


def test_histogram_over_time_equals_numpy_histogram_per_column():
    rng = np.random.default_rng(0)
    norms = 10 ** rng.normal(0, 1, size=(3, 47))  # (runs, steps), log-normal
    norms[1, 30:] = np.nan  # a run that stopped at step 30
    norms[2, 5] = np.inf
    edges = log_edges(norms, n_bins=12)
    counts = histogram_over_time(norms, edges, steps_per_column=5)
    assert counts.shape == (12, 10)
    for j in range(10):
        block = norms[:, 5 * j : 5 * j + 5].ravel()
        expected, _ = np.histogram(block[np.isfinite(block)], bins=edges)
        np.testing.assert_array_equal(counts[:, j], expected)
    assert counts.sum() == np.isfinite(norms).sum()  # the edges hold every finite value


def test_histogram_counts_an_edge_value_as_numpy_does():
    edges = np.array([1.0, 2.0, 4.0])
    values = np.array([1.0, 2.0, 4.0, 0.5, 5.0])  # two outside the edges
    expected, _ = np.histogram(values, bins=edges)
    np.testing.assert_array_equal(histogram_over_time(values, edges, 5)[:, 0], expected)


def _net_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()  # float64: exact Δθ
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    return net, x, y


def _step(net, opt, x, y, scale: float = 1.0):
    opt.zero_grad()
    (scale * nn.functional.cross_entropy(net(x), y)).backward()
    grads = [p.grad.clone() for p in net.parameters()]
    before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    delta = torch.cat(
        [(p.detach() - b).ravel() for p, b in zip(net.parameters(), before, strict=True)]
    )
    return grads, delta


@pytest.mark.parametrize(("mode", "threshold"), [("none", None), ("norm", 1e-3), ("value", 1e-4)])
def test_clip_recorder_records_the_pre_clip_norm(mode, threshold):
    net, x, y = _net_and_batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    recorder = ClipRecorder(mode, threshold)
    recorder.attach(opt)
    grads, _ = _step(net, opt, x, y, scale=50.0)
    expected = torch.nn.utils.get_total_norm(grads)  # torch's norm of the unclipped gradients
    assert recorder.history().shape == (1,)
    assert recorder.history()[0] == pytest.approx(float(expected), rel=1e-12)
    assert float(expected) > 1.0  # so clipping had work to do


def test_clipping_at_a_tiny_threshold_bounds_the_applied_update():
    lr, c = 0.1, 1e-3
    net, x, y = _net_and_batch()
    opt = torch.optim.SGD(net.parameters(), lr=lr)  # θ ← θ - η g: ‖Δθ‖ = η ‖g_clipped‖
    ClipRecorder("norm", c).attach(opt)
    _, delta = _step(net, opt, x, y, scale=50.0)
    # ‖g‖ ≫ c: η c up to the 1e-6 in c / (‖g‖ + 1e-6)
    assert float(delta.norm()) == pytest.approx(lr * c, rel=1e-6)
    net2, _, _ = _net_and_batch()
    unclipped = torch.optim.SGD(net2.parameters(), lr=lr)
    _, free = _step(net2, unclipped, x, y, scale=50.0)
    assert float(free.norm()) > 100 * lr * c


def test_clipping_by_value_bounds_every_coordinate():
    lr, v = 0.1, 1e-4
    net, x, y = _net_and_batch()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    ClipRecorder("value", v).attach(opt)
    grads, delta = _step(net, opt, x, y, scale=50.0)
    assert float(delta.abs().max()) == pytest.approx(lr * v, rel=1e-9)
    expected = torch.cat([g.clamp(-v, v).ravel() for g in grads])  # torch's clamp as reference
    torch.testing.assert_close(delta, -lr * expected, rtol=1e-9, atol=1e-15)


def test_clip_recorder_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown clip mode 'max'"):
        ClipRecorder("max", 1.0)
    with pytest.raises(ValueError, match="need one"):
        ClipRecorder("norm")
    with pytest.raises(ValueError, match="> 0"):
        ClipRecorder("value", -1.0)


class _FakeTrainer:
    def __init__(self, losses):
        self.history = [{"step": i + 1, "train/loss": v} for i, v in enumerate(losses)]


def test_divergence_guard_stops_past_the_factor():
    guard = DivergenceGuard(3.0)
    guard(_FakeTrainer([2.0, 5.9]))  # 5.9 < 6: goes on
    with pytest.raises(LossDiverged, match="step 2"):
        guard(_FakeTrainer([2.0, 6.1]))
