"""Post-training quantisation and QAT on tiny in-test models: the weight-only int8 linear against
``torch.quantize_per_channel`` and its error bound, dynamic and static int8 (FX) against fp32 and
against torch's own fake-quant simulation, the per-layer fake-quant against
``torch.fake_quantize_per_*_affine``, QAT's freeze schedule and conversion, sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from layer4_architectures.sequence.gpt import GPT
from layer4_architectures.vision.resnet import cifar_resnet
from layer7_research.efficient import ptq, qat

# the reference, torch.ao.quantization, warns of its own deprecation
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _resnet(seed: int = 0) -> nn.Module:
    """A ResNet-8 with non-trivial BN statistics (a few train-mode batches)."""
    torch.manual_seed(seed)
    model = cifar_resnet(1)
    with torch.no_grad():
        for i in range(3):
            model(torch.randn(16, 3, 16, 16, generator=_gen(100 + i)))
    return model.eval()


def test_int8_weight_linear_equals_torch_per_channel():
    lin = nn.Linear(24, 7)
    with torch.no_grad():
        lin.weight.mul_(torch.linspace(0.1, 4, 7)[:, None])  # channels of different ranges
    q = ptq.Int8WeightLinear(lin)
    w = lin.weight.detach()
    scale = w.abs().amax(1) / 127.5  # symmetric int8: max|w| / ((127 + 128) / 2)
    ref = torch.quantize_per_channel(
        w, scale.double(), torch.zeros(7, dtype=torch.long), 0, torch.qint8
    )
    torch.testing.assert_close(q.scale, scale)
    assert q.qweight.dtype == torch.int8
    torch.testing.assert_close(q.weight(), ref.dequantize(), atol=1e-6, rtol=0)
    x = torch.randn(5, 24, generator=_gen(0))
    # |y − y_fp32| ≤ Σ_j |x_j| · s_c/2, per output channel c
    bound = x.abs().sum(1, keepdim=True) * scale / 2
    err = (q(x) - lin(x)).abs()
    assert (err <= bound + 1e-6).all()
    assert err.max() > 0


def _gpt() -> nn.Module:
    torch.manual_seed(0)
    return GPT(97, n_layer=2, n_head=2, n_embd=32, block_size=32).eval()


@pytest.mark.parametrize("method", [ptq.weight_only_int8, ptq.dynamic_int8])
def test_gpt_linears_quantised_inside_blocks_only(method):
    model = _gpt()
    q = method(model, "blocks")
    x = torch.randint(0, 97, (2, 16), generator=_gen(1))
    assert type(q.lm_head) is nn.Linear  # outside ``under``: untouched (tied to the embedding)
    inside = [m for n, m in q.named_modules() if n.startswith("blocks.")]
    assert not any(type(m) is nn.Linear for m in inside)
    assert all(type(m) is nn.Linear for m in model.modules() if "Linear" in type(m).__name__)
    ref = model(x)
    rel = (q(x) - ref).abs().max() / ref.abs().max()
    assert 0 < rel < 0.05
    assert ptq.model_bytes(q) < 0.65 * ptq.model_bytes(model)


def test_static_int8_close_to_fp32_and_smaller():
    model = _resnet()
    x = torch.randn(64, 3, 16, 16, generator=_gen(2))
    qmodel = ptq.static_int8(model, [x[:32], x[32:]])
    ops = qmodel.code
    assert "quantized.add_relu" in ops  # the residual adds run on int8
    fused = {type(m).__name__ for m in qmodel.modules()}
    assert "ConvReLU2d" in fused  # conv-BN-ReLU fused (BN folded)
    with ptq.quant_engine("x86"):
        y = qmodel(x)
    ref = model(x)
    assert (y - ref).abs().max() / ref.abs().max() < 0.1
    assert (y.argmax(1) == ref.argmax(1)).float().mean() > 0.8
    assert ptq.model_bytes(qmodel) < 0.4 * ptq.model_bytes(model)


def test_fake_quant_layer_equals_torch_fake_quant():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(4, 3, 8, 8, generator=_gen(3))
    model = nn.Sequential(conv)
    fq = ptq.fake_quantize_layers(model, ["0"], [x])
    # reference: min/max over the calibration batch, torch's fake-quant kernels
    lo, hi = min(x.min().item(), 0.0), max(x.max().item(), 0.0)
    s_x = (hi - lo) / 255
    z_x = int(min(max(0 - round(lo / s_x), 0), 255))
    x_ref = torch.fake_quantize_per_tensor_affine(x, s_x, z_x, 0, 255)
    s_w = conv.weight.detach().abs().amax((1, 2, 3)) / 127.5
    w_ref = torch.fake_quantize_per_channel_affine(
        conv.weight.detach(), s_w, torch.zeros(5, dtype=torch.int32), 0, -128, 127
    )
    expected = F.conv2d(x_ref, w_ref, conv.bias, padding=1)
    torch.testing.assert_close(fq(x), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(fq(x), conv(x), atol=1e-4)


def test_sensitivity_quantises_one_layer_at_a_time():
    model = _resnet()
    x = torch.randn(8, 3, 8, 8, generator=_gen(4))
    ref = model(x)
    seen = []

    def evaluate(m: nn.Module) -> float:
        wrapped = [n for n, mod in m.named_modules() if isinstance(mod, ptq.FakeQuantLayer)]
        seen.append(wrapped)
        return (m(x) - ref).abs().max().item()

    result = ptq.sensitivity(model, [x], evaluate)
    names = ptq.quantisable_layers(model)
    assert list(result) == names and len(names) == 8  # ResNet-8: 7 convs + the head
    assert [w for w in seen] == [[n] for n in names]
    assert all(v > 0 for v in result.values())


def test_latency_and_bytes():
    lin = nn.Linear(100, 100)
    n = ptq.model_bytes(lin)
    assert 4 * 100 * 101 <= n < 4 * 100 * 101 + 2000  # fp32 values plus a small header
    assert ptq.latency_ms(lin, torch.randn(1, 100), repeats=3, warmup=1) > 0
    with pytest.raises(ValueError, match="repeats=0"):
        ptq.latency_ms(lin, torch.randn(1, 100), repeats=0)
    with pytest.raises(ValueError, match="engine 'tpu'"):
        with ptq.quant_engine("tpu"):
            pass
    with pytest.raises(ValueError, match="no nn.Linear"):
        ptq.weight_only_int8(nn.Sequential(nn.ReLU()))


@pytest.mark.slow  # FX tracing, QAT preparation and conversion: 3-5 s on 2 cores
def test_qat_freezes_then_converts_to_what_it_simulated():
    model = _resnet()
    g = _gen(5)
    data = [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))]
    prepared = qat.prepare_qat(model, data[0][0])
    before = [p.clone() for p in prepared.parameters()]
    qat.finetune(prepared, data * 4, steps=4, lr=0.01, freeze_fraction=0.5, progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, prepared.parameters(), strict=True))
    fqs = [m for m in prepared.modules() if hasattr(m, "observer_enabled")]
    assert fqs and all(int(m.observer_enabled) == 0 for m in fqs)  # observers frozen
    bns = [m for m in prepared.modules() if hasattr(m, "freeze_bn")]
    assert bns and all(m.freeze_bn for m in bns)
    x = data[0][0]
    simulated = prepared.eval()(x)
    qmodel = qat.convert_qat(prepared)
    with ptq.quant_engine("x86"):
        y = qmodel(x)
    # the int8 kernels compute what the fake-quant graph simulated, up to a few output steps
    step = qmodel.code and (simulated.detach().flatten().unique().diff().min().item())
    assert (y - simulated).abs().mean() < 1.5 * step
    assert (y - simulated).abs().max() <= 6 * step + 1e-6
    with pytest.raises(ValueError, match="freeze_fraction"):
        qat.finetune(prepared, data, steps=1, lr=0.1, freeze_fraction=2.0)
