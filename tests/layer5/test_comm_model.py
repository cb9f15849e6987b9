"""The ring all-reduce cost model and the speed-up model against hand-computed values, their
monotone properties, the (α, β) fit on exact data, and bad input."""

import numpy as np
import pytest

from layer5_training.distributed.comm import (
    BACKWARD_FRACTION,
    bus_bandwidth,
    fit_alpha_beta,
    predicted_speedup,
    ring_allreduce_seconds,
)


def test_ring_allreduce_hand_computed():
    # 2(N-1)/N * M / B: N=2, M=1 GB, B=1 GB/s -> 1 s; N=4 -> 1.5 s; N=1 -> no communication
    assert ring_allreduce_seconds(1e9, 2, 1e9) == pytest.approx(1.0)
    assert ring_allreduce_seconds(1e9, 4, 1e9) == pytest.approx(1.5)
    assert ring_allreduce_seconds(1e9, 1, 1e9) == 0.0
    assert ring_allreduce_seconds(0, 8, 1e9, latency=1e-5) == pytest.approx(14e-5)
    assert bus_bandwidth(1e9, 1.0, 2) == pytest.approx(1e9)
    assert bus_bandwidth(1e9, 1.5, 4) == pytest.approx(1e9)  # busbw is the link rate again


def test_ring_time_grows_with_n_towards_twice_the_message():
    times = [ring_allreduce_seconds(1e9, n, 1e9) for n in range(1, 65)]
    assert all(a < b for a, b in zip(times, times[1:], strict=False))
    assert times[-1] < 2.0 and times[-1] == pytest.approx(2 * 63 / 64)


def test_speedup_hand_computed_and_monotone():
    # t_c = 1 s, comm(2) = 0.25 s: no overlap 1/(0.5 + 0.25); overlap hides 2/3 * 0.5 of it
    bw = 4e9  # M = 1e9 bytes: 2(2-1)/2 * 1e9 / 4e9 = 0.25 s
    assert ring_allreduce_seconds(1e9, 2, bw) == pytest.approx(0.25)
    assert predicted_speedup(2, 1.0, 1e9, bw) == pytest.approx(1 / 0.75)
    exposed = max(0.0, 0.25 - BACKWARD_FRACTION * 0.5)
    assert predicted_speedup(2, 1.0, 1e9, bw, overlap=True) == pytest.approx(1 / (0.5 + exposed))
    assert predicted_speedup(1, 1.0, 1e9, bw) == 1.0
    ns = np.arange(1, 65)
    plain = [predicted_speedup(int(n), 1.0, 1e8, 1e9) for n in ns]
    hidden = [predicted_speedup(int(n), 1.0, 1e8, 1e9, overlap=True) for n in ns]
    assert all(h >= p for h, p in zip(hidden, plain, strict=True))
    assert all(s <= n for s, n in zip(hidden, ns, strict=True))  # never super-linear
    free = [predicted_speedup(int(n), 1.0, 1.0, 1e15) for n in ns]  # no communication cost
    assert free == pytest.approx(list(ns), rel=1e-6)


def test_alpha_beta_fit_recovers_a_known_link():
    sizes = np.array([1e3, 1e5, 1e6, 1e7])
    seconds = np.array([ring_allreduce_seconds(m, 2, 2e9, latency=5e-5) for m in sizes])
    alpha, beta = fit_alpha_beta(sizes, seconds, 2)
    assert alpha == pytest.approx(5e-5, rel=1e-6) and beta == pytest.approx(2e9, rel=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="number of ranks must be >= 1"):
        ring_allreduce_seconds(1.0, 0, 1.0)
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        ring_allreduce_seconds(1.0, 2, 0.0)
    with pytest.raises(ValueError, match="compute time must be > 0"):
        predicted_speedup(2, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="needs n >= 2"):
        fit_alpha_beta(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 1)
