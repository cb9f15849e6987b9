"""RoPE against an independent complex-number formulation, and its relative-position property."""

from __future__ import annotations

import pytest
import torch

from layer4_architectures.sequence.rope import RotaryEmbedding, apply_rope, rope_angles


def complex_rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """x (T, d) float64 as d/2 complex numbers x_{2i} + i x_{2i+1}, each times e^{i m θ_i}."""
    d = x.shape[-1]
    freqs = torch.tensor([theta ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())  # (T, d/2)
    rotated = z * torch.polar(torch.ones_like(freqs), positions[:, None] * freqs)  # e^{i m θ}
    return torch.view_as_real(rotated).reshape(x.shape)


@pytest.mark.parametrize(("d", "theta"), [(8, 10000.0), (16, 500.0)])
def test_rope_equals_the_complex_formulation(d, theta):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, d, dtype=torch.float64)  # (B, H, T, d)
    angles = rope_angles(d, 40, theta)
    offset = 7
    got = apply_rope(x, angles[offset : offset + 12].cos(), angles[offset : offset + 12].sin())
    positions = torch.arange(offset, offset + 12, dtype=torch.float64)
    expected = complex_rope(x, positions, theta)
    assert (got - expected).abs().max() <= 1e-12


def test_scores_after_rope_depend_only_on_the_offset_m_minus_n():
    torch.manual_seed(1)
    d = 16
    q, k = torch.randn(d, dtype=torch.float64), torch.randn(d, dtype=torch.float64)
    angles = rope_angles(d, 64)

    def rotated(v, m):
        return apply_rope(v[None], angles[m : m + 1].cos(), angles[m : m + 1].sin())[0]

    for delta in (0, 3, 11):
        scores = [rotated(q, n + delta) @ rotated(k, n) for n in (0, 5, 20, 40)]
        assert max(abs(s - scores[0]) for s in scores) <= 1e-12
    # and it does depend on the offset (the check above can fail)
    assert abs(rotated(q, 3) @ rotated(k, 0) - rotated(q, 0) @ rotated(k, 0)) > 1e-3
    # a rotation keeps norms
    assert abs(rotated(q, 17).norm() - q.norm()) <= 1e-12


def test_rotary_module_offsets_and_refuses_positions_past_its_table():
    rope = RotaryEmbedding(8, 10)
    x = torch.randn(1, 2, 4, 8)
    full = rope(torch.cat([torch.zeros(1, 2, 3, 8), x], dim=2))[:, :, 3:]
    assert torch.allclose(rope(x, offset=3), full, atol=1e-6)
    assert "cos" not in rope.state_dict()  # rebuilt from the config, not checkpointed
    with pytest.raises(ValueError, match="positions up to 11 exceed .* max_len=10"):
        rope(x, offset=7)
    with pytest.raises(ValueError, match="even, positive head_dim, got head_dim=7"):
        RotaryEmbedding(7, 10)
