"""Filter-normalised directions and loss slices, checked against closed forms."""

from __future__ import annotations

import numpy as np

from layer1_autograd.landscape import filter_normalized_direction, slice_1d, slice_2d


def _params(rng):
    return {
        "w": rng.normal(size=(4, 3)),
        "conv": rng.normal(size=(2, 3, 2, 2)),
        "b": rng.normal(size=4),
    }


def test_each_filter_of_the_direction_has_its_weights_norm():
    rng = np.random.default_rng(0)
    theta = _params(rng)
    d = filter_normalized_direction(theta, rng)
    np.testing.assert_allclose(
        np.linalg.norm(d["w"], axis=1), np.linalg.norm(theta["w"], axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        np.linalg.norm(d["conv"].reshape(2, -1), axis=1),
        np.linalg.norm(theta["conv"].reshape(2, -1), axis=1),
        rtol=1e-12,
    )
    np.testing.assert_array_equal(d["b"], 0.0)
    # a direction, not a rescaled copy of the weights
    assert abs(np.corrcoef(d["w"].ravel(), theta["w"].ravel())[0, 1]) < 0.9


def test_slices_of_a_quadratic_match_the_closed_form():
    """L(θ) = ‖θ − c‖² gives L(θ + αd₁ + βd₂) = ‖θ − c‖² + 2<θ − c, αd₁ + βd₂> + ‖αd₁ + βd₂‖²."""
    rng = np.random.default_rng(1)
    theta, c = _params(rng), _params(rng)
    d1, d2 = filter_normalized_direction(theta, rng), filter_normalized_direction(theta, rng)

    def flat(p):
        return np.concatenate([p[k].ravel() for k in sorted(p)])

    def loss(p):
        return float(np.sum((flat(p) - flat(c)) ** 2))

    r, u, v = flat(theta) - flat(c), flat(d1), flat(d2)
    alphas, betas = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    np.testing.assert_allclose(
        slice_1d(loss, theta, d1, alphas), [np.sum((r + a * u) ** 2) for a in alphas], rtol=1e-12
    )
    grid = slice_2d(loss, theta, d1, d2, alphas, betas)
    assert grid.shape == (3, 5)
    expected = [[np.sum((r + a * u + b * v) ** 2) for a in alphas] for b in betas]
    np.testing.assert_allclose(grid, expected, rtol=1e-12)
    assert slice_1d(loss, theta, d1, np.array([0.0]))[0] == loss(theta)  # θ itself untouched
