"""The airbench-style network: its whitening conv whitens (against a numpy eigendecomposition of
the patches' second moments), its BatchNorm against torch's (running statistics, a 64x bias
rate), its parameter count against a hand formula, its FLOPs against FlopCounterMode, its
test-time augmentation against the mean of the views, its filters surviving a checkpoint, and
bad configurations refused by name."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from layer3_framework.train import compose, load_model, run
from layer4_architectures.vision.airbench import Airbench, BiasNorm
from layer4_architectures.vision.flops import count_flops


def smooth_images(n: int = 16, c: int = 3, size: int = 32) -> torch.Tensor:
    """Noise blurred and mixed across channels: pixels of a patch are strongly correlated."""
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.randn(n, c, size + 2, size + 2, generator=g), 3, stride=1)
    mix = torch.eye(c) + 0.5 * torch.ones(c, c)
    return torch.einsum("dc,nchw->ndhw", mix, x) + 0.3  # (n, c, size, size), nonzero mean


def numpy_patches(x: np.ndarray, k: int) -> np.ndarray:
    """Every k x k patch, flattened in (C, k, k) order, by explicit slicing."""
    n, c, h, w = x.shape
    rows = [
        x[:, :, i : i + k, j : j + k].reshape(n, c * k * k)
        for i in range(h - k + 1)
        for j in range(w - k + 1)
    ]
    return np.concatenate(rows)  # (n * positions, c*k*k)


def test_the_whitening_conv_whitens_the_training_patches():
    x = smooth_images()
    model = Airbench(widths=(8, 16, 16), whiten_eps=1e-6)
    model.train()(x)  # the first training batch sets the filters
    assert bool(model.whitened)
    p = numpy_patches(x.double().numpy(), 2)  # (N, 12)
    lam = np.linalg.eigvalsh(p.T @ p / len(p))[::-1]  # largest first
    z = (model.whiten(x) - model.whiten.bias.view(1, -1, 1, 1)).detach().double()
    z = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).numpy()  # (N, 24): every position
    d = p.shape[1]
    np.testing.assert_allclose(z[:, d:], -z[:, :d], atol=1e-5)  # the ± pairs
    second = z[:, :d].T @ z[:, :d] / len(z)  # E[z zᵀ] = Λ (Λ + ε)^-1 ≈ I
    np.testing.assert_allclose(second, np.diag(lam / (lam + 1e-6)), atol=2e-4)
    assert lam[0] / lam[-1] > 100  # the input was far from white
    model(x.flip(-1))  # a second batch leaves the filters alone
    z2 = model.whiten.weight.detach()
    model2 = Airbench(widths=(8, 16, 16), whiten_eps=1e-6)
    model2.train()(x)
    torch.testing.assert_close(z2, model2.whiten.weight.detach())  # deterministic


def test_the_filters_and_flag_survive_a_checkpoint(tmp_path):
    cfg = compose([
        "model=airbench_cifar", "data=cifar10", "data.source=synthetic", "data.n_train=32",
        "data.n_test=16", "data.batch_size=16", "data.eval_batch_size=16",
        "model.widths=[8,16,16]", "trainer.max_steps=2", "trainer.progress=false",
        "logger=jsonl",
    ])  # fmt: skip
    run(cfg, tmp_path)
    model = load_model(tmp_path, device="cpu")
    assert bool(model.whitened)
    w = model.whiten.weight.detach().flatten(1)  # (24, 12)
    half = w[:12] @ w[:12].T  # Λ_ε^-1 Vᵀ V Λ_ε^-1 ... = Λ_ε^-1: diagonal, positive
    torch.testing.assert_close(half, torch.diag(torch.diagonal(half)), atol=1e-3, rtol=1e-4)
    assert (torch.diagonal(half) > 0).all()
    before = w.clone()
    model.train()(torch.randn(4, 3, 32, 32))
    torch.testing.assert_close(model.whiten.weight.detach().flatten(1), before)


def test_bias_norm_is_batchnorm_with_a_64x_bias_rate():
    torch.manual_seed(0)
    x, grad = torch.randn(8, 5, 6, 6), torch.randn(8, 5, 6, 6)
    ours = BiasNorm(5, momentum=0.6, eps=1e-12, lr_scale=64.0)
    ref = torch.nn.BatchNorm2d(5, eps=1e-12, momentum=0.4)
    ref.weight.requires_grad_(False)
    torch.testing.assert_close(ours(x), ref(x))
    mean = x.mean(dim=(0, 2, 3))
    torch.testing.assert_close(ours.norm.running_mean, 0.4 * mean)  # 0.6·0 + 0.4·batch
    lr = 0.01
    for module, rate in ((ours, lr), (ref, 64 * lr)):
        (module(x) * grad).sum().backward()
        torch.optim.SGD([module.bias], lr=rate).step()
    torch.testing.assert_close(ours.scale * ours.bias.detach(), ref.bias.detach())


def hand_count(c: int, widths: tuple[int, int, int], classes: int) -> int:
    d = 2 * c * 4  # ± eigenvector filters of 2x2 patches
    total = d * c * 4 + d  # whitening weights (frozen) and bias
    for a, b in zip((d, *widths[:2]), widths, strict=True):
        total += 9 * a * b + 9 * b * b + 2 * b  # two 3x3 convs without bias, two BN biases
    return total + widths[-1] * classes  # linear head without bias


@pytest.mark.parametrize(("c", "size", "widths"), [(3, 32, (64, 256, 256)), (1, 28, (8, 12, 16))])
def test_shapes_parameters_and_flops(c, size, widths):
    model = Airbench(in_channels=c, image_size=size, widths=widths, tta="none")
    x = torch.randn(2, c, size, size)
    assert model.train()(x).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == hand_count(c, widths, 10)
    report = count_flops(model, (2, c, size, size))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    assert report.total == counter.get_total_flops()
    assert report.parameters == hand_count(c, widths, 10)


def test_the_paper_widths_cost_about_118m_multiply_adds():
    macs = count_flops(Airbench(tta="none"), (1, 3, 32, 32)).total / 2
    # whitening 31²·24·12, then per conv H_out²·C_in·C_out·9 (pooling after the first of a
    # group), then the head
    want = 31**2 * 24 * 12 + 31**2 * 24 * 64 * 9 + 15**2 * 64 * 64 * 9 + 15**2 * 64 * 256 * 9
    want += 2 * 7**2 * 256 * 256 * 9 + 3**2 * 256 * 256 * 9 + 256 * 10
    assert macs == want and 117e6 < macs < 119e6


def test_test_time_augmentation_is_the_mean_of_the_views():
    torch.manual_seed(0)
    model = Airbench(widths=(8, 16, 16))
    model.train()(smooth_images(8))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        one = model.logits(x)
        mirror = (one + model.logits(x.flip(-1))) / 2
        pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [pad[..., :32, :32], pad[..., 2:, 2:]]
        moved = sum((model.logits(v) + model.logits(v.flip(-1))) / 2 for v in views) / 2
        for tta, want in (
            ("none", one),
            ("flip", mirror),
            ("flip_translate", (mirror + moved) / 2),
        ):
            model.tta = tta
            torch.testing.assert_close(model(x), want)
    assert not torch.allclose(mirror, one)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"widths": (8, 0, 16)}, "widths"),
        ({"widths": (8, 16)}, "widths"),
        ({"image_size": 8}, "image_size=8"),
        ({"tta": "rotate"}, "tta='rotate'"),
        ({"bn_momentum": 1.0}, "bn_momentum"),
        ({"whiten_kernel": 0}, "whiten_kernel"),
    ],
)
def test_bad_configurations_are_refused_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Airbench(**kwargs)
