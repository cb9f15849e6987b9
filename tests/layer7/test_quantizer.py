"""The scratch quantiser against ``torch.ao.quantization`` on the same tensors: observers'
scales and zero points, quantised codes, fake-quant forward and its straight-through backward,
and the rounding-error bound |x − x̂| ≤ s/2."""

from __future__ import annotations

import pytest
import torch
from torch.ao.quantization import observer as tobs

from layer7_research.efficient.quantizer import (
    FakeQuant,
    Observer,
    QScheme,
    dequantize,
    fake_quantize,
    qparams,
    quantize,
)

# the reference, torch.ao.quantization, warns of its own deprecation (and of reduce_range's)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

TORCH_DTYPE = {"int8": torch.qint8, "uint8": torch.quint8}
# (dtype, symmetric, reduce_range) torch builds (it refuses reduce_range for symmetric uint8)
SCHEMES = [
    (d, s, r)
    for d in ("int8", "uint8")
    for s in (False, True)
    for r in (False, True)
    if not (d == "uint8" and s and r)
]


def _batches(seed: int = 0, n: int = 3) -> list[torch.Tensor]:
    """Skewed, shifted batches (an asymmetric range, positive and negative values)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 6, 5, generator=g) * (1 + i) + 0.7 * i for i in range(n)]


def _torch_observer(cls, dtype: str, symmetric: bool, reduce_range: bool, per_channel: bool):
    if per_channel:
        qs = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
        return cls(ch_axis=1, dtype=TORCH_DTYPE[dtype], qscheme=qs, reduce_range=reduce_range)
    qs = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return cls(dtype=TORCH_DTYPE[dtype], qscheme=qs, reduce_range=reduce_range)


CASES = [
    (tobs.MinMaxObserver, None, False),
    (tobs.MovingAverageMinMaxObserver, 0.01, False),
    (tobs.PerChannelMinMaxObserver, None, True),
    (tobs.MovingAveragePerChannelMinMaxObserver, 0.01, True),
]


@pytest.mark.parametrize(("cls", "averaging", "per_channel"), CASES)
@pytest.mark.parametrize(("dtype", "symmetric", "reduce_range"), SCHEMES)
def test_observer_qparams_equal_torch(cls, averaging, per_channel, dtype, symmetric, reduce_range):
    ref = _torch_observer(cls, dtype, symmetric, reduce_range, per_channel)
    scheme = QScheme(dtype, symmetric, 1 if per_channel else None, reduce_range)
    ours = Observer(scheme, averaging)
    for x in _batches():
        ref(x)
        ours(x)
    scale_ref, zp_ref = ref.calculate_qparams()
    scale, zp = ours.qparams()
    assert (ours.qparams()[0].shape == (6,)) == per_channel
    assert (scheme.qmin, scheme.qmax) == (ref.quant_min, ref.quant_max)
    torch.testing.assert_close(scale, scale_ref.float().reshape(scale.shape), rtol=1e-6, atol=0)
    assert torch.equal(zp, zp_ref.long().reshape(zp.shape)), (zp, zp_ref)


def test_constant_tensor_scale_is_eps_not_zero():
    obs = Observer(QScheme("uint8"))
    obs(torch.zeros(5))
    scale, zp = obs.qparams()
    ref = tobs.MinMaxObserver(dtype=torch.quint8)
    ref(torch.zeros(5))
    assert scale.item() == ref.calculate_qparams()[0].item() > 0
    assert zp.item() == ref.calculate_qparams()[1].item()


def _near_tie(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Where x/s lies within 1e-4 of a half-integer: torch's kernels compute x·(1/s) + z in
    float32 before rounding, so exact-tie and last-ulp cases may round the other way."""
    frac = (x / scale).abs() % 1
    return (frac - 0.5).abs() < 1e-4


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_quantize_per_tensor_equals_torch(dtype, symmetric):
    x = torch.cat(_batches(1)).flatten() * 2  # values beyond the range too: clamping
    scheme = QScheme(dtype, symmetric)
    obs = Observer(scheme)
    obs(x[: x.numel() // 2])  # range of half the data: the rest partly saturates
    scale, zp = obs.qparams()
    ref = torch.quantize_per_tensor(x, scale.item(), int(zp), TORCH_DTYPE[dtype])
    q = quantize(x, scale, zp, scheme)
    ok = (q == ref.int_repr().long()) | _near_tie(x, scale)
    assert ok.all(), f"{(~ok).sum()} codes differ from torch.quantize_per_tensor"
    assert (q == ref.int_repr().long()).float().mean() > 0.999
    torch.testing.assert_close(
        dequantize(ref.int_repr().long(), scale, zp, scheme), ref.dequantize()
    )


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_quantize_per_channel_equals_torch(dtype):
    w = torch.randn(7, 4, 3, 3) * torch.linspace(0.1, 3, 7).view(-1, 1, 1, 1)
    scheme = QScheme(dtype, symmetric=False, axis=0)
    obs = Observer(scheme)
    obs(w)
    scale, zp = obs.qparams()
    ref = torch.quantize_per_channel(w, scale.double(), zp, 0, TORCH_DTYPE[dtype])
    q = quantize(w, scale, zp, scheme)
    ok = (q == ref.int_repr().long()) | _near_tie(w, scale.view(-1, 1, 1, 1))
    assert ok.all(), f"{(~ok).sum()} codes differ from torch.quantize_per_channel"
    torch.testing.assert_close(
        dequantize(q, scale, zp, scheme), ref.dequantize(), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    ("scale", "zp", "qmin", "qmax"), [(0.05, 3, -128, 127), (0.1, 100, 0, 255)]
)
def test_fake_quant_forward_and_ste_backward_equal_torch(scale, zp, qmin, qmax):
    x = (torch.randn(4000, generator=torch.Generator().manual_seed(3)) * 6).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    scheme = QScheme("int8" if qmin < 0 else "uint8")
    y = fake_quantize(x, torch.tensor(scale), torch.tensor(zp), scheme)
    y_ref = torch.fake_quantize_per_tensor_affine(x_ref, scale, zp, qmin, qmax)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=0)
    g = torch.randn(4000)
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(x.grad, x_ref.grad)
    clamped = (x.grad == 0).float().mean()
    assert 0.05 < clamped < 0.95  # the test covers both branches of the estimator


def test_error_bound_inside_range():
    x = torch.cat(_batches(2)).flatten()
    for scheme in (QScheme("int8", True), QScheme("uint8"), QScheme("int8", axis=0)):
        xs = x.view(12, -1) if scheme.axis == 0 else x
        obs = Observer(scheme)
        obs(xs)
        scale, zp = obs.qparams()
        err = (dequantize(quantize(xs, scale, zp, scheme), scale, zp, scheme) - xs).abs()
        bound = scale.view(-1, 1) if scheme.axis == 0 else scale
        assert (err <= bound / 2 + 1e-6).all(), (err / bound).max()
        assert (err > bound / 4).any()  # not trivially exact


def test_fake_quant_module_observes_then_freezes():
    fq = FakeQuant(QScheme("uint8"))
    fq(torch.tensor([-1.0, 1.0]))
    fq.observe = False
    fq(torch.tensor([-10.0, 10.0]))  # frozen: the range stays [-1, 1]
    scale, _ = fq.observer.qparams()
    assert scale.item() == pytest.approx(2 / 255)
    assert fq(torch.tensor([5.0])).item() == pytest.approx(1.0, abs=scale.item())
    fq.enabled = False
    assert fq(torch.tensor([5.0])).item() == 5.0


def test_bad_input_names_the_value():
    with pytest.raises(ValueError, match="int4"):
        QScheme("int4")
    with pytest.raises(ValueError, match="averaging_constant"):
        Observer(averaging_constant=1.5)
    with pytest.raises(RuntimeError, match="seen no data"):
        Observer().qparams()
    with pytest.raises(ValueError, match="axis 0"):
        quantize(
            torch.zeros(3, 2), torch.ones(2), torch.zeros(2, dtype=torch.long), QScheme(axis=0)
        )


def test_qparams_zero_point_in_range_for_all_positive_range():
    scale, zp = qparams(torch.tensor(2.0), torch.tensor(5.0), QScheme("uint8"))
    assert zp.item() == 0  # the range is widened to hold 0
    assert scale.item() == pytest.approx(5 / 255)
