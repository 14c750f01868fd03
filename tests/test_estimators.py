"""Tests of vae_course.estimators: the full-covariance KL against torch.distributions, the Monte
Carlo KL within its standard errors, symmetric and degenerate cases, hand gradients against
autograd, the softplus helpers, and bad inputs (each error names its argument)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vae_course import estimators, losses
from vae_course.estimators import kl_gradients, kl_mvn, monte_carlo_kl


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_spd(k: int, g: torch.Generator, batch: tuple[int, ...] = (), dtype=torch.float64) -> torch.Tensor:
    a = torch.randn(*batch, k, k, generator=g, dtype=dtype)
    return a @ a.transpose(-2, -1) + 0.5 * torch.eye(k, dtype=dtype)


# ---------------------------------------------------------------- kl_mvn


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_kl_mvn_matches_torch_distributions(k):
    g = _gen(k)
    mu1, mu2 = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    cov1, cov2 = _random_spd(k, g), _random_spd(k, g)
    ours = kl_mvn(mu1, cov1, mu2, cov2)
    ref = kl_divergence(MultivariateNormal(mu1, cov1), MultivariateNormal(mu2, cov2))
    assert ours.dtype == torch.float64 and ours.shape == ()
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_kl_mvn_textbook_formula_with_inverses():
    g = _gen(1)
    k = 4
    mu1, mu2 = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    cov1, cov2 = _random_spd(k, g), _random_spd(k, g)
    inv2 = torch.linalg.inv(cov2)
    d = mu2 - mu1
    textbook = 0.5 * (torch.trace(inv2 @ cov1) + d @ inv2 @ d - k + torch.logdet(cov2) - torch.logdet(cov1))
    assert torch.allclose(kl_mvn(mu1, cov1, mu2, cov2), textbook, rtol=1e-10)


def test_kl_mvn_batches_broadcast():
    g = _gen(2)
    k = 3
    mu1 = torch.randn(5, k, generator=g, dtype=torch.float64)
    cov1 = _random_spd(k, g, batch=(5,))
    mu2, cov2 = torch.zeros(k, dtype=torch.float64), torch.eye(k, dtype=torch.float64)  # one prior for all
    ours = kl_mvn(mu1, cov1, mu2, cov2)
    ref = kl_divergence(MultivariateNormal(mu1, cov1), MultivariateNormal(mu2.expand(5, k), cov2.expand(5, k, k)))
    assert ours.shape == (5,)
    assert torch.allclose(ours, ref, rtol=1e-10)


def test_kl_mvn_float32_input_is_computed_in_float64():
    g = _gen(3)
    mu1 = torch.randn(3, generator=g)
    cov1 = _random_spd(3, g, dtype=torch.float32)
    out = kl_mvn(mu1, cov1, torch.zeros(3), torch.eye(3))
    assert out.dtype == torch.float64
    ref = kl_mvn(mu1.double(), cov1.double(), torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    assert torch.allclose(out, ref)


def test_kl_mvn_is_zero_iff_equal_and_positive_otherwise():
    g = _gen(4)
    mu, cov = torch.randn(4, generator=g, dtype=torch.float64), _random_spd(4, g)
    assert abs(float(kl_mvn(mu, cov, mu, cov))) < 1e-12
    for _ in range(20):
        mu2, cov2 = torch.randn(4, generator=g, dtype=torch.float64), _random_spd(4, g)
        assert float(kl_mvn(mu, cov, mu2, cov2)) > 0
        assert float(kl_mvn(mu2, cov2, mu, cov)) > 0


def test_kl_mvn_symmetric_cases():
    """Equal covariances: KL = half the squared Mahalanobis distance, the same both ways.
    Mean shift +d or -d gives the same KL. Different covariances: the KL is not symmetric."""
    g = _gen(5)
    k = 3
    cov = _random_spd(k, g)
    mu1, mu2 = torch.randn(k, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    d = mu2 - mu1
    half_mahalanobis = 0.5 * d @ torch.linalg.solve(cov, d)
    assert torch.allclose(kl_mvn(mu1, cov, mu2, cov), half_mahalanobis, rtol=1e-10)
    assert torch.allclose(kl_mvn(mu1, cov, mu2, cov), kl_mvn(mu2, cov, mu1, cov), rtol=1e-10)
    zero = torch.zeros(k, dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    assert torch.allclose(kl_mvn(d, eye, zero, eye), kl_mvn(-d, eye, zero, eye), rtol=1e-12)
    cov2 = _random_spd(k, g)
    assert abs(float(kl_mvn(mu1, cov, mu2, cov2) - kl_mvn(mu2, cov2, mu1, cov))) > 1e-3


def test_kl_mvn_one_dimensional_closed_form():
    # KL(N(m, s^2) || N(0, 1)) = 1/2 (s^2 - ln s^2 - 1 + m^2)
    m, s = 0.7, 1.9
    out = kl_mvn(torch.tensor([m], dtype=torch.float64), torch.tensor([[s * s]], dtype=torch.float64),
                 torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    assert math.isclose(float(out), 0.5 * (s * s - math.log(s * s) - 1 + m * m), rel_tol=1e-12)


def test_kl_mvn_diagonal_equals_losses_gaussian_kl():
    g = _gen(6)
    mu = torch.randn(7, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64)
    mu_p = torch.randn(5, generator=g, dtype=torch.float64)
    logvar_p = torch.randn(5, generator=g, dtype=torch.float64)
    full = kl_mvn(mu, torch.diag_embed(logvar.exp()), mu_p, torch.diag(logvar_p.exp()))
    assert torch.allclose(full, losses.gaussian_kl(mu, logvar, mu_p, logvar_p), rtol=1e-10)
    full_std = kl_mvn(mu, torch.diag_embed(logvar.exp()), torch.zeros(5, dtype=torch.float64),
                      torch.eye(5, dtype=torch.float64))
    assert torch.allclose(full_std, losses.gaussian_kl(mu, logvar), rtol=1e-10)


@pytest.mark.parametrize(
    ("args", "name", "error"),
    [
        ((torch.zeros(2, dtype=torch.int64), torch.eye(2), torch.zeros(2), torch.eye(2)), "mu1", TypeError),
        (([0.0, 0.0], torch.eye(2), torch.zeros(2), torch.eye(2)), "mu1", TypeError),
        ((torch.zeros(2), torch.eye(3), torch.zeros(2), torch.eye(2)), "cov1", ValueError),
        ((torch.zeros(2), torch.ones(2), torch.zeros(2), torch.eye(2)), "cov1", ValueError),
        ((torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(3)), "mu2", ValueError),
        ((torch.zeros(2), torch.tensor([[1.0, 0.5], [0.0, 1.0]]), torch.zeros(2), torch.eye(2)), "cov1", ValueError),
        ((torch.zeros(2), torch.eye(2), torch.zeros(2), torch.tensor([[1.0, 2.0], [2.0, 1.0]])), "cov2", ValueError),
        ((torch.zeros(2), torch.eye(2), torch.zeros(2), torch.zeros(2, 2)), "cov2", ValueError),
        ((torch.tensor([float("nan"), 0.0]), torch.eye(2), torch.zeros(2), torch.eye(2)), "mu1", ValueError),
        ((torch.zeros(0), torch.zeros(0, 0), torch.zeros(0), torch.zeros(0, 0)), "mu1", ValueError),
        ((torch.zeros(2, 2), torch.eye(2), torch.zeros(3, 2), torch.eye(2)), "batch shapes", ValueError),
    ],
)
def test_kl_mvn_bad_inputs_name_the_argument(args, name, error):
    with pytest.raises(error, match=name):
        kl_mvn(*args)


# ---------------------------------------------------------------- monte_carlo_kl


def test_monte_carlo_kl_within_standard_errors_of_closed_form():
    g = _gen(10)
    mu = torch.randn(16, 4, generator=g)
    logvar = 0.8 * torch.randn(16, 4, generator=g)
    est, se = monte_carlo_kl(mu, logvar, 4000, generator=_gen(11))
    exact = losses.gaussian_kl(mu.double(), logvar.double())
    assert est.shape == se.shape == (16,) and est.dtype == torch.float64
    assert bool((se > 0).all())
    z = (est - exact) / se
    assert float(z.abs().max()) < 5.0, z
    # Standardised errors look like N(0, 1): neither systematically off nor too spread.
    assert abs(float(z.mean())) < 1.0 and 0.3 < float(z.std()) < 2.0


def test_monte_carlo_kl_with_a_diagonal_prior_matches_torch_distributions():
    g = _gen(12)
    mu, logvar = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    mu_p, logvar_p = torch.randn(3, generator=g), torch.randn(3, generator=g)
    est, se = monte_carlo_kl(mu, logvar, 5000, generator=_gen(13), mu_p=mu_p, logvar_p=logvar_p)
    ref = kl_divergence(Normal(mu.double(), (0.5 * logvar.double()).exp()),
                        Normal(mu_p.double(), (0.5 * logvar_p.double()).exp())).sum(-1)
    assert float(((est - ref) / se).abs().max()) < 5.0


def test_monte_carlo_kl_is_exactly_zero_when_q_equals_p():
    g = _gen(14)
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    est, se = monte_carlo_kl(mu, logvar, 50, generator=_gen(0), mu_p=mu, logvar_p=logvar)
    assert torch.allclose(est, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(se, torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_monte_carlo_kl_standard_error_shrinks_like_one_over_sqrt_n():
    mu, logvar = torch.full((1, 3), 0.5), torch.full((1, 3), -0.7)
    _, se_small = monte_carlo_kl(mu, logvar, 400, generator=_gen(1))
    _, se_big = monte_carlo_kl(mu, logvar, 40000, generator=_gen(2))
    assert 0.07 < float(se_big / se_small) < 0.14  # ideal: 0.1


def test_monte_carlo_kl_chunked_equals_unchunked(monkeypatch):
    """Chunks of 7 samples, merged by the pairwise update, give the mean and standard error of
    all 1000 samples at once (the same noise is fed to both runs)."""
    mu, logvar = torch.randn(4, 3, generator=_gen(3)), torch.randn(4, 3, generator=_gen(4))
    noise = torch.randn(1000, 4, 3, generator=_gen(5), dtype=torch.float64)
    real_randn = torch.randn

    def fake_randn(shape, generator=None, dtype=None, device=None):
        nonlocal used
        out = noise[used:used + shape[0]]
        used += shape[0]
        return out

    results = []
    for chunk in (1 << 23, 4 * 3 * 7):
        used = 0
        monkeypatch.setattr(estimators, "_CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(torch, "randn", fake_randn)
        try:
            results.append(monte_carlo_kl(mu, logvar, 1000))
        finally:
            monkeypatch.setattr(torch, "randn", real_randn)
        assert used == 1000
    (est1, se1), (est2, se2) = results
    assert torch.allclose(est1, est2, rtol=1e-10) and torch.allclose(se1, se2, rtol=1e-8)
    z = mu.double() + (0.5 * logvar.double()).exp() * noise
    ratio = estimators.log_normal_diag(z, mu.double(), logvar.double()) - estimators.log_normal_diag(
        z, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(est1, ratio.mean(0)) and torch.allclose(se1, ratio.std(0) / math.sqrt(1000))


def test_monte_carlo_kl_is_reproducible_with_a_generator():
    mu, logvar = torch.zeros(2, 2), torch.ones(2, 2)
    a = monte_carlo_kl(mu, logvar, 100, generator=_gen(7))
    b = monte_carlo_kl(mu, logvar, 100, generator=_gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    ("kwargs", "name", "error"),
    [
        (dict(mu=torch.zeros(3), logvar=torch.zeros(3), n_samples=10), "mu", ValueError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 4), n_samples=10), "logvar", ValueError),
        (dict(mu=torch.zeros(2, 3, dtype=torch.int64), logvar=torch.zeros(2, 3), n_samples=10), "mu", TypeError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.full((2, 3), float("inf")), n_samples=10), "logvar", ValueError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3), n_samples=1), "n_samples", ValueError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3), n_samples=10.0), "n_samples", ValueError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3), n_samples=10, generator=0), "generator", TypeError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3), n_samples=10, mu_p=torch.zeros(4)), "mu_p", ValueError),
        (dict(mu=torch.zeros(2, 3), logvar=torch.zeros(2, 3), n_samples=10, logvar_p=torch.zeros(3, 3)),
         "logvar_p", ValueError),
    ],
)
def test_monte_carlo_kl_bad_inputs_name_the_argument(kwargs, name, error):
    with pytest.raises(error, match=name):
        monte_carlo_kl(**kwargs)


# ---------------------------------------------------------------- hand gradients


def test_kl_gradients_match_autograd():
    g = _gen(20)
    mu = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    hand = kl_gradients(mu.detach(), logvar.detach())
    d_mu, d_logvar = torch.autograd.grad(losses.gaussian_kl(mu, logvar).sum(), (mu, logvar))
    assert torch.allclose(hand.mu, d_mu) and torch.allclose(hand.logvar, d_logvar)

    var = logvar.detach().exp().requires_grad_()
    kl_var = 0.5 * (var - var.log() - 1 + mu.detach() ** 2).sum()
    assert torch.allclose(hand.var, torch.autograd.grad(kl_var, var)[0])

    std = (0.5 * logvar.detach()).exp().requires_grad_()
    kl_std = 0.5 * (std ** 2 - 2 * std.log() - 1 + mu.detach() ** 2).sum()
    assert torch.allclose(hand.std, torch.autograd.grad(kl_std, std)[0])


def test_kl_gradients_vanish_at_the_prior():
    hand = kl_gradients(torch.zeros(3), torch.zeros(3))
    for field in hand:
        assert torch.equal(field, torch.zeros(3))


def test_kl_gradients_bad_inputs():
    with pytest.raises(ValueError, match="mu and logvar"):
        kl_gradients(torch.zeros(3), torch.zeros(4))
    with pytest.raises(TypeError, match="logvar"):
        kl_gradients(torch.zeros(3), torch.zeros(3, dtype=torch.int64))


# ---------------------------------------------------------------- softplus helpers


def test_softplus_std_and_its_inverse():
    s = torch.linspace(-20, 30, 101, dtype=torch.float64)
    std = estimators.softplus_std(s)
    assert torch.allclose(std, F.softplus(s)) and bool((std > 0).all())
    assert torch.allclose(estimators.inverse_softplus(std), s, rtol=1e-9, atol=1e-9)
    floored = estimators.softplus_std(torch.tensor([-200.0]), min_std=1e-4)
    assert float(floored) == pytest.approx(1e-4)


def test_softplus_std_gradient_is_sigmoid():
    s = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(estimators.softplus_std(s).sum(), s)
    assert torch.allclose(grad, torch.sigmoid(s.detach()))


def test_softplus_bad_inputs():
    with pytest.raises(TypeError, match="s"):
        estimators.softplus_std(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="min_std"):
        estimators.softplus_std(torch.zeros(2), min_std=-1.0)
    with pytest.raises(ValueError, match="std"):
        estimators.inverse_softplus(torch.tensor([1.0, 0.0]))


def test_log_normal_diag_matches_torch_distributions():
    g = _gen(30)
    z, mu, logvar = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    ref = Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    assert torch.allclose(estimators.log_normal_diag(z, mu, logvar), ref)
