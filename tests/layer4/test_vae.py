"""The VAE's math against independent references: the closed-form KL against a Monte Carlo
estimate, ELBO ≤ IWAE ≤ log p(x) with log p(x) by quadrature on a 1-D-latent model, IWAE with
k = 1 equal to the ELBO in expectation, the reparameterised gradient against the closed form
(and the score-function estimator), the task's loss and logs, bad input."""

import math

import pytest
import torch

from layer4_architectures.generative.vae import (
    VAE,
    VAETask,
    bernoulli_log_likelihood,
    elbo_terms,
    gaussian_log_density,
    iwae_log_likelihood,
    kl_to_standard_normal,
    reparameterize,
)


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4) * 0.5
    n = 200_000
    z = reparameterize(mu, logvar, torch.randn(n, 3, 4, dtype=torch.float64))  # (n, 3, 4)
    zero = torch.zeros_like(z)
    log_ratio = gaussian_log_density(z, mu, logvar) - gaussian_log_density(z, zero, zero)
    mc, se = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n)
    closed = kl_to_standard_normal(mu.double(), logvar.double())
    assert torch.all((mc - closed).abs() < 5 * se + 1e-9)


def test_gaussian_log_density_matches_torch_distributions():
    z, mu, logvar = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 3)
    ref = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), ref)


def test_bernoulli_log_likelihood_matches_the_formula():
    logits, x = torch.randn(4, 6), torch.rand(4, 6)
    p = torch.sigmoid(logits)
    ref = (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)
    torch.testing.assert_close(bernoulli_log_likelihood(logits, x), ref)


def _tiny_model() -> VAE:
    torch.manual_seed(1)
    return VAE(in_channels=1, image_size=2, hidden=8, latent_dim=1).double()


def _log_px_by_quadrature(model: VAE, x: torch.Tensor) -> torch.Tensor:
    """log ∫ p(x | z) N(z; 0, 1) dz on a fine grid (1-D latent): the exact marginal."""
    z = torch.linspace(-12, 12, 24_001, dtype=torch.float64)[:, None]  # (G, 1)
    with torch.no_grad():
        logits = model.decode(z)[:, None].expand(-1, x.shape[0], -1)  # (G, B, D)
        log_px_z = bernoulli_log_likelihood(logits, x.flatten(1).expand_as(logits))  # (G, B)
    log_pz = -0.5 * (z.square() + math.log(2 * math.pi))  # (G, 1)
    dz = float(z[1, 0] - z[0, 0])
    return torch.logsumexp(log_px_z + log_pz, dim=0) + math.log(dz)


def test_elbo_below_iwae_below_log_likelihood_and_iwae1_is_the_elbo():
    model = _tiny_model()
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    log_px = _log_px_by_quadrature(model, x)
    torch.manual_seed(2)
    reps = 20_000
    with torch.no_grad():
        recon, kl = elbo_terms(model, x.repeat(reps, 1, 1, 1))
    elbo = -(recon + kl).view(reps, 3)
    elbo_mean, elbo_se = elbo.mean(0), elbo.std(0) / math.sqrt(reps)
    iwae1 = iwae_log_likelihood(model, x.repeat(reps, 1, 1, 1), k=1).view(reps, 3)
    draws = iwae_log_likelihood(model, x.repeat(400, 1, 1, 1), k=200).view(400, 3)
    iwae200, iwae_se = draws.mean(0), draws.std(0) / 400**0.5
    assert torch.all((iwae1.mean(0) - elbo_mean).abs() < 5 * (elbo_se + iwae1.std(0) / reps**0.5))
    assert torch.all(elbo_mean < iwae200)
    assert torch.all(iwae200 <= log_px + 4 * iwae_se)  # E[L_k] <= log p(x), up to MC error
    assert torch.all(log_px - iwae200 < log_px - elbo_mean)  # k = 200 closes part of the gap


def test_reparameterised_gradient_matches_the_closed_form_and_score_function():
    # f(z) = z²: E_q[f] = μ² + σ², so ∂/∂μ = 2μ and ∂/∂(log σ²) = σ²
    torch.manual_seed(3)
    mu = torch.tensor([0.7], dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor([-0.4], dtype=torch.float64, requires_grad=True)
    eps = torch.randn(400_000, 1, dtype=torch.float64)
    reparameterize(mu, logvar, eps).square().mean().backward()
    sigma2 = math.exp(-0.4)
    assert mu.grad.item() == pytest.approx(1.4, abs=0.01)
    assert logvar.grad.item() == pytest.approx(sigma2, abs=0.01)
    # score function: E[f(z) ∂ log q(z)/∂μ] with z held fixed (no path through z)
    z = reparameterize(mu, logvar, eps).detach()
    m2 = mu.detach().clone().requires_grad_(True)
    (z.square() * gaussian_log_density(z, m2, logvar.detach())[:, None]).mean().backward()
    assert m2.grad.item() == pytest.approx(1.4, abs=0.05)


def test_the_task_minimises_recon_plus_kl_and_logs_both():
    torch.manual_seed(4)
    task = VAETask(VAE(in_channels=1, image_size=4, hidden=8, latent_dim=3))
    x = torch.rand(5, 1, 4, 4)
    torch.manual_seed(5)
    loss, logs = task.training_step((x, torch.zeros(5)), 0, "main")
    assert set(logs) == {"recon", "kl"}
    assert loss.item() == pytest.approx((logs["recon"] + logs["kl"]).item(), rel=1e-6)
    sums = task.validation_step((x, torch.zeros(5)))
    assert sums["loss"][1] == 5
    assert sums["loss"][0].item() == pytest.approx((sums["recon"][0] + sums["kl"][0]).item())
    assert sums["kl"][0].item() > 0


def test_bad_input_is_named():
    model = VAE(in_channels=1, image_size=4, hidden=8, latent_dim=3)
    with pytest.raises(ValueError, match="must be >= 1, got 0"):
        model.sample(0)
    with pytest.raises(ValueError, match="3 dims, got 20"):
        model.decode(torch.zeros(2, 20))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        iwae_log_likelihood(model, torch.rand(2, 1, 4, 4), k=0)
    with pytest.raises(ValueError, match=r"\[0, 1\].*mnist01"):
        VAETask(model).training_step((torch.rand(2, 1, 4, 4) * 2 - 1, None), 0, "main")
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        VAE(latent_dim=0)
