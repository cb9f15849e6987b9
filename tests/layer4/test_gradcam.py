"""Grad-CAM against a manual computation with autograd.grad, and against its closed form for a
global-average-pool + linear head (where it is CAM: ReLU(Σ_k w_ck A_k) / hw)."""

import pytest
import torch
import torch.nn.functional as F

from layer4_architectures.vision.efficientnet import EfficientNet
from layer4_architectures.vision.gradcam import grad_cam
from layer4_architectures.vision.resnet import cifar_resnet


def test_matches_manual_autograd_and_the_cam_closed_form():
    torch.manual_seed(0)
    m = cifar_resnet(1).eval()
    x = torch.randn(3, 3, 32, 32)
    classes = torch.tensor([1, 4, 7])
    cam = grad_cam(m, m.last_stage, x, classes)
    acts = m.stages(m.stem(x)).detach().requires_grad_(True)  # (B, 64, 8, 8)
    logits = m.head(acts.mean((2, 3)))
    (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), acts)
    manual = F.relu((g.mean((2, 3), keepdim=True) * acts).sum(1))
    torch.testing.assert_close(cam.raw, manual.detach())
    closed = F.relu(torch.einsum("bk,bkij->bij", m.head.weight[classes], acts.detach())) / 64
    torch.testing.assert_close(cam.raw, closed, rtol=1e-4, atol=1e-6)
    assert cam.maps.shape == (3, 32, 32)
    assert float(cam.maps.min()) >= 0 and float(cam.maps.amax((1, 2)).min()) == pytest.approx(1)


def test_default_classes_are_the_predictions_and_the_model_mode_is_restored():
    torch.manual_seed(0)
    m = EfficientNet(width=0.25, depth=0.25, stem_stride=1).train()
    x = torch.randn(2, 3, 32, 32)
    cam = grad_cam(m, m.last_stage, x)
    assert m.training
    m.eval()
    assert torch.equal(cam.classes, m(x).argmax(-1))


def test_bad_input_and_unused_layer():
    m = cifar_resnet(1)
    with pytest.raises(ValueError, match="B, C, H, W"):
        grad_cam(m, m.last_stage, torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="not used"):
        grad_cam(m, torch.nn.Linear(2, 2), torch.randn(1, 3, 32, 32))
