"""The GAN's math against independent references: the non-saturating loss is −log D(G(z)) with
gradient −(1 − σ(ℓ)) per logit; D's loss is its binary cross-entropy; D* = p_data/(p_data + p_g)
as the maximiser of a·log D + b·log(1 − D) and as what a discriminator trained on two 1-D
Gaussians converges to; DCGAN shapes; the two-optimizer order; bad input."""

import math

import pytest
import torch

from layer4_architectures.generative.gan import (
    Discriminator,
    GANTask,
    Generator,
    SampleGrid,
    discriminator_loss,
    generator_loss,
    optimal_discriminator,
)


def test_non_saturating_loss_is_minus_log_d_and_its_gradient():
    logits = torch.randn(8, dtype=torch.float64, requires_grad=True)
    loss = generator_loss(logits)
    assert loss.item() == pytest.approx(-torch.log(torch.sigmoid(logits)).mean().item())
    loss.backward()
    expected = -(1 - torch.sigmoid(logits.detach())) / 8
    torch.testing.assert_close(logits.grad, expected)


def test_discriminator_loss_is_its_binary_cross_entropy():
    r, f = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean()
    assert discriminator_loss(r, f).item() == pytest.approx(ref.item())


def test_optimal_discriminator_maximises_the_pointwise_objective():
    a = torch.tensor([0.2, 1.0, 3.0], dtype=torch.float64)
    b = torch.tensor([0.6, 1.0, 0.5], dtype=torch.float64)
    d = torch.linspace(1e-4, 1 - 1e-4, 100_001, dtype=torch.float64)[:, None]  # (G, 1)
    best = d[(a * d.log() + b * (1 - d).log()).argmax(0), 0]
    torch.testing.assert_close(optimal_discriminator(a, b), best, atol=1e-4, rtol=0)


def test_a_trained_discriminator_reaches_d_star_on_two_gaussians():
    # p_data = N(0, 1), p_g = N(1, 1): logit D*(x) = log p_data − log p_g = 0.5 − x (linear)
    torch.manual_seed(0)
    d = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam(d.parameters(), lr=0.05)
    for _ in range(400):
        real, fake = torch.randn(4096, 1), torch.randn(4096, 1) + 1
        opt.zero_grad()
        discriminator_loss(d(real), d(fake)).backward()
        opt.step()
    x = torch.linspace(-2, 3, 11)[:, None]
    normal = torch.distributions.Normal
    star = optimal_discriminator(
        normal(0.0, 1.0).log_prob(x).exp(), normal(1.0, 1.0).log_prob(x).exp()
    )
    torch.testing.assert_close(torch.sigmoid(d(x)).detach(), star, atol=0.03, rtol=0)


def test_dcgan_shapes_and_ranges():
    g, d = Generator(latent_dim=16, width=8), Discriminator(width=8)
    images = g(torch.randn(5, 16))
    assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
    assert d(images).shape == (5,)
    samples = g.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 28, 28) and 0 <= samples.min() and samples.max() <= 1
    assert torch.equal(samples, g.sample(3, torch.Generator().manual_seed(0)))  # seeded


def test_the_task_steps_d_every_step_and_g_every_kth():
    task = GANTask(Generator(latent_dim=16, width=8), d_width=8, d_steps=3)
    orders = [tuple(task.optimizer_order(s, ("d", "g"))) for s in range(6)]
    assert orders == [("d",), ("d",), ("d", "g"), ("d",), ("d",), ("d", "g")]
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    loss, logs = task.training_step((x, None), 0, "d")
    loss.backward()
    assert all(p.grad is None for p in task.generator.parameters())  # fakes detached for D
    assert set(logs) == {"d_real", "d_fake"}
    task.zero_grad()
    task.training_step((x, None), 0, "g")[0].backward()
    assert all(p.grad is not None for p in task.generator.parameters())


def test_sample_grid_hook_records_the_fixed_z_every_k_steps():
    g = Generator(latent_dim=16, width=8)
    hook = SampleGrid(g, every=2, n=4)
    for step in range(1, 6):
        hook(type("T", (), {"step": step})())
    assert [s for s, _ in hook.grids] == [2, 4]
    assert hook.grids[0][1].shape == (4, 1, 28, 28)
    torch.testing.assert_close(hook.grids[0][1], hook.grids[1][1])  # same z, same weights


def test_bad_input_is_named():
    g = Generator(latent_dim=16, width=8)
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        g.sample(0)
    with pytest.raises(ValueError, match=r"z must be \(B, 16\), got \(2, 20\)"):
        g(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="divisible by 4.*got 30"):
        Generator(image_size=30)
    with pytest.raises(ValueError, match="d_steps must be >= 1, got 0"):
        GANTask(g, d_steps=0)
    with pytest.raises(ValueError, match="optimizers"):
        GANTask(g, d_width=8).optimizer_order(0, ("g", "d"))
    assert math.isfinite(generator_loss(torch.tensor([50.0])).item())


def test_one_optimizer_step_gives_each_net_its_own_losss_gradient():
    torch.manual_seed(0)
    task = GANTask(Generator(latent_dim=8, width=4), d_width=4).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64) * 2 - 1

    def grads(names):
        task.zero_grad()
        torch.manual_seed(1)  # the same fakes each time
        total = sum(task.training_step((x, None), 0, name)[0] for name in names)
        total.backward()
        return [None if p.grad is None else p.grad.clone() for p in task.parameters()]

    joint = grads(["main"])
    torch.manual_seed(1)
    task.zero_grad()
    task.training_step((x, None), 0, "d")[0].backward()  # D's gradient of D's loss
    d_ref = [p.grad.clone() for p in task.discriminator.parameters()]
    task.zero_grad()
    task.training_step((x, None), 0, "g")[0].backward()  # G's gradient of G's loss
    g_ref = [p.grad.clone() for p in task.generator.parameters()]
    n_g = len(g_ref)  # task.parameters(): the generator's first, then the discriminator's
    for got, ref in zip(joint[:n_g], g_ref, strict=True):
        torch.testing.assert_close(got, ref)
    for got, ref in zip(joint[n_g:], d_ref, strict=True):
        torch.testing.assert_close(got, ref)
    assert task.optimizer_order(0, ("main",)) == ("main",)
