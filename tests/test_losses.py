"""Tests of vae_course.losses: closed forms against torch.distributions, Monte Carlo and autograd;
units (nats per example, summed); extreme inputs; bad inputs."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal, kl_divergence

from vae_course import losses
from helpers import gen


_gen = gen  # one seeded generator per call (tests/helpers.py)


def _reference_kl(mu, logvar, mu_p=None, logvar_p=None):
    """KL(q || p) summed over the last dim, computed by torch.distributions."""
    mu_p = torch.zeros_like(mu) if mu_p is None else mu_p
    logvar_p = torch.zeros_like(mu) if logvar_p is None else logvar_p
    q = Normal(mu, (0.5 * logvar).exp())
    p = Normal(mu_p.expand_as(mu), (0.5 * logvar_p).exp().expand_as(mu))
    return kl_divergence(q, p).sum(-1)


# ---------------------------------------------------------------- gaussian_kl

def test_kl_standard_prior_matches_torch_distributions():
    g = _gen(0)
    mu = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    kl = losses.gaussian_kl(mu, logvar)
    assert kl.shape == (7,)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar), rtol=1e-10, atol=1e-10)


def test_kl_general_prior_matches_torch_distributions():
    g = _gen(1)
    mu, logvar, mu_p, logvar_p = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 1.5 for _ in range(4))
    kl = losses.gaussian_kl(mu, logvar, mu_p, logvar_p)
    assert kl.shape == (6,)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, mu_p, logvar_p), rtol=1e-10, atol=1e-10)


def test_kl_broadcast_prior_of_shape_D():
    g = _gen(2)
    mu, logvar = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    mu_p = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar_p = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    kl = losses.gaussian_kl(mu, logvar, mu_p, logvar_p)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, mu_p, logvar_p), rtol=1e-10, atol=1e-10)
    # the same as giving the prior row by row
    full = losses.gaussian_kl(mu, logvar, mu_p.expand(5, 3), logvar_p.expand(5, 3))
    torch.testing.assert_close(kl, full)


def test_kl_only_mu_p_or_only_logvar_p_defaults_the_other_to_standard():
    g = _gen(3)
    mu, logvar, other = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar, mu_p=other),
                               _reference_kl(mu, logvar, other, zeros))
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar, logvar_p=other),
                               _reference_kl(mu, logvar, zeros, other))


@pytest.mark.parametrize("general_prior", [False, True])
def test_kl_matches_monte_carlo(general_prior):
    g = _gen(4)
    d, s = 3, 200_000
    mu = torch.tensor([[0.7, -1.2, 0.1]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.4, 0.0]], dtype=torch.float64)
    if general_prior:
        mu_p = torch.tensor([[0.2, 0.3, -0.4]], dtype=torch.float64)
        logvar_p = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64)
    else:
        mu_p = torch.zeros(1, d, dtype=torch.float64)
        logvar_p = torch.zeros(1, d, dtype=torch.float64)
    z = mu + (0.5 * logvar).exp() * torch.randn(s, d, generator=g, dtype=torch.float64)

    def log_normal(z, m, lv):  # written out, independent of the code under test
        return (-0.5 * (math.log(2 * math.pi) + lv + (z - m) ** 2 / lv.exp())).sum(-1)

    log_ratio = log_normal(z, mu, logvar) - log_normal(z, mu_p, logvar_p)
    mc, se = log_ratio.mean().item(), (log_ratio.std() / math.sqrt(s)).item()
    kl = losses.gaussian_kl(mu, logvar, *((mu_p, logvar_p) if general_prior else ())).item()
    assert abs(kl - mc) < 4 * se, (kl, mc, se)


def test_kl_nonnegative_and_zero_when_q_equals_prior():
    g = _gen(5)
    mu = torch.randn(50, 6, generator=g)
    logvar = torch.randn(50, 6, generator=g) * 3
    assert (losses.gaussian_kl(mu, logvar) >= 0).all()
    assert (losses.gaussian_kl(mu, logvar, torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)) >= 0).all()
    assert torch.equal(losses.gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    torch.testing.assert_close(losses.gaussian_kl(mu, logvar, mu, logvar), torch.zeros(50), atol=1e-6, rtol=0)
    # and strictly positive as soon as q differs from the prior
    assert (losses.gaussian_kl(torch.full((1, 2), 0.1), torch.zeros(1, 2)) > 0).all()
    assert (losses.gaussian_kl(torch.zeros(1, 2), torch.full((1, 2), 0.1)) > 0).all()


def test_kl_float32_near_the_prior_is_nonnegative_and_accurate():
    """q within rounding of the prior: exp(v) - v - 1 cancels in float32; the KL must stay >= 0."""
    small = torch.logspace(-7, -2, 60).view(-1, 1).expand(60, 3)
    for sign in (1.0, -1.0):
        logvar = (sign * small).contiguous()
        mu = torch.zeros_like(logvar)
        for args in ((mu, logvar), (mu, logvar, torch.zeros(3), torch.zeros(3)),
                     (mu + 0.5, logvar + 0.25, torch.full((3,), 0.5), torch.full((3,), 0.25))):
            kl = losses.gaussian_kl(*args)
            assert kl.dtype == torch.float32
            assert (kl >= 0).all(), kl.min()
            ref = _reference_kl(*(a.double() for a in args))  # the same float32 inputs, in float64
            torch.testing.assert_close(kl.double(), ref, rtol=1e-3, atol=1e-11)


def test_kl_hand_gradients_match_autograd():
    """dKL/dmu = mu and dKL/dsigma^2 = 1/2 - 1/(2 sigma^2) (standard normal prior)."""
    g = _gen(6)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sigma2 = (torch.rand(4, 3, generator=g, dtype=torch.float64) * 3 + 0.1).requires_grad_()
    losses.gaussian_kl(mu, sigma2.log()).sum().backward()
    torch.testing.assert_close(mu.grad, mu.detach())
    torch.testing.assert_close(sigma2.grad, 0.5 - 1 / (2 * sigma2.detach()))


def test_kl_is_summed_over_latent_dimensions():
    mu = torch.full((2, 1), 1.0)
    one = losses.gaussian_kl(mu, torch.zeros(2, 1))
    torch.testing.assert_close(one, torch.full((2,), 0.5))  # 1/2 * mu^2
    ten = losses.gaussian_kl(torch.ones(2, 10), torch.zeros(2, 10))
    torch.testing.assert_close(ten, torch.full((2,), 5.0))


# ---------------------------------------------------------------- reconstruction terms

def test_bernoulli_nll_matches_torch_distributions_for_binary_x():
    g = _gen(7)
    logits = torch.randn(5, 1, 4, 4, generator=g, dtype=torch.float64) * 4
    x = (torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64) > 0.5).double()
    expected = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    nll = losses.bernoulli_nll(logits, x)
    assert nll.shape == (5,)
    torch.testing.assert_close(nll, expected)


def test_bernoulli_nll_is_cross_entropy_for_grayscale_x():
    g = _gen(8)
    logits = torch.randn(6, 1, 3, 5, generator=g, dtype=torch.float64) * 3
    x = torch.rand(6, 1, 3, 5, generator=g, dtype=torch.float64)
    p = torch.sigmoid(logits)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(losses.bernoulli_nll(logits, x), expected)


def test_bernoulli_nll_zero_logits_is_log2_per_pixel():
    x = torch.rand(3, 1, 4, 4, generator=_gen(9))
    torch.testing.assert_close(losses.bernoulli_nll(torch.zeros_like(x), x), torch.full((3,), 16 * math.log(2)))


def test_bernoulli_nll_is_summed_not_averaged_over_pixels():
    """iid pixels: twice as many pixels give about twice the nats per example."""
    g = _gen(10)
    p = 0.3
    small = (torch.rand(2000, 1, 4, 4, generator=g) < p).float()
    big = (torch.rand(2000, 1, 4, 8, generator=g) < p).float()
    logit = math.log(p / (1 - p))
    a = losses.bernoulli_nll(torch.full_like(small, logit), small).mean().item()
    b = losses.bernoulli_nll(torch.full_like(big, logit), big).mean().item()
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert a == pytest.approx(16 * entropy, rel=0.02)
    assert b / a == pytest.approx(2.0, rel=0.03)


@pytest.mark.parametrize("tensor_logvar", [False, True])
def test_gaussian_nll_matches_torch_distributions(tensor_logvar):
    g = _gen(11)
    mean = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    x = torch.rand(4, 2, 3, generator=g, dtype=torch.float64)
    if tensor_logvar:
        logvar = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
        nll = losses.gaussian_nll(mean, x, logvar)
    else:
        logvar = torch.full_like(x, -1.3)
        nll = losses.gaussian_nll(mean, x, -1.3)
    expected = -Normal(mean, (0.5 * logvar).exp()).log_prob(x).flatten(1).sum(1)
    assert nll.shape == (4,)
    torch.testing.assert_close(nll, expected)


def test_gaussian_nll_default_is_unit_variance_and_broadcast_logvar():
    g = _gen(12)
    mean, x = torch.randn(3, 1, 2, 2, generator=g), torch.rand(3, 1, 2, 2, generator=g)
    expected = 0.5 * ((x - mean) ** 2).flatten(1).sum(1) + 4 * 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(losses.gaussian_nll(mean, x), expected)
    # a scalar tensor log-variance is broadcast to every pixel
    torch.testing.assert_close(losses.gaussian_nll(mean, x, torch.tensor(0.7)), losses.gaussian_nll(mean, x, 0.7))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 3.5])
def test_negative_elbo_total_is_recon_plus_beta_kl(likelihood, beta):
    g = _gen(13)
    out = torch.randn(5, 1, 4, 4, generator=g)
    x = torch.rand(5, 1, 4, 4, generator=g)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    parts = losses.negative_elbo(out, x, mu, logvar, beta=beta, likelihood=likelihood)
    recon = losses.bernoulli_nll(out, x) if likelihood == "bernoulli" else losses.gaussian_nll(out, x)
    torch.testing.assert_close(parts.reconstruction, recon)
    torch.testing.assert_close(parts.kl, losses.gaussian_kl(mu, logvar))
    torch.testing.assert_close(parts.total, recon + beta * parts.kl)
    assert parts.total.shape == parts.reconstruction.shape == parts.kl.shape == (5,)


def test_negative_elbo_gaussian_uses_decoder_logvar():
    g = _gen(14)
    out, x = torch.randn(2, 1, 2, 2, generator=g), torch.rand(2, 1, 2, 2, generator=g)
    mu, logvar = torch.zeros(2, 1), torch.zeros(2, 1)
    parts = losses.negative_elbo(out, x, mu, logvar, likelihood="gaussian", decoder_logvar=-2.0)
    torch.testing.assert_close(parts.reconstruction, losses.gaussian_nll(out, x, -2.0))


# ---------------------------------------------------------------- extreme values

def _assert_finite_with_finite_grads(value, *leaves):
    assert torch.isfinite(value).all(), value
    value.sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), leaf.grad


@pytest.mark.parametrize("big", [100.0, -100.0])
def test_bernoulli_nll_finite_for_extreme_logits(big):
    logits = torch.full((2, 1, 2, 2), big, requires_grad=True)
    x = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(1, 1, 2, 2).expand(2, 1, 2, 2).contiguous()
    nll = losses.bernoulli_nll(logits, x)
    _assert_finite_with_finite_grads(nll, logits)
    # a confident wrong prediction costs about |logit| nats per pixel
    wrong = 1.0 if big < 0 else 0.0
    cost = losses.bernoulli_nll(torch.full((1, 1), big), torch.full((1, 1), wrong))
    assert cost.item() == pytest.approx(100.0, rel=1e-4)


@pytest.mark.parametrize("lv", [100.0, -100.0])
@pytest.mark.parametrize("m", [0.0, 1e3, -1e3])
def test_kl_finite_for_extreme_logvar_and_mu(lv, m):
    mu = torch.full((2, 3), m, requires_grad=True)
    logvar = torch.full((2, 3), lv, requires_grad=True)
    _assert_finite_with_finite_grads(losses.gaussian_kl(mu, logvar), mu, logvar)
    mu2 = torch.full((2, 3), m, requires_grad=True)
    logvar2 = torch.full((2, 3), lv, requires_grad=True)
    logvar_p = torch.full((3,), -lv, requires_grad=True)
    mu_p = torch.zeros(3, requires_grad=True)
    _assert_finite_with_finite_grads(losses.gaussian_kl(mu2, logvar2, mu_p, logvar_p), mu2, logvar2, mu_p, logvar_p)


@pytest.mark.parametrize("lv", [100.0, -100.0])
def test_gaussian_nll_finite_for_extreme_logvar(lv):
    mean = torch.randn(2, 1, 2, 2, generator=_gen(15)).mul(1e3).requires_grad_()
    x = torch.rand(2, 1, 2, 2, generator=_gen(16))
    logvar = torch.full((2, 1, 2, 2), lv, requires_grad=True)
    _assert_finite_with_finite_grads(losses.gaussian_nll(mean, x, logvar), mean, logvar)


def test_negative_elbo_finite_for_extreme_encoder_outputs():
    out = torch.full((2, 1, 2, 2), -100.0, requires_grad=True)
    x = torch.ones(2, 1, 2, 2)
    mu = torch.tensor([[1e3, -1e3], [0.0, 0.0]], requires_grad=True)
    logvar = torch.tensor([[100.0, -100.0], [-100.0, 100.0]], requires_grad=True)
    _assert_finite_with_finite_grads(losses.negative_elbo(out, x, mu, logvar).total, out, mu, logvar)


# ---------------------------------------------------------------- property test

@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 5),
    d=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.0, 10.0),
    general=st.booleans(),
)
def test_kl_property_nonnegative_finite_and_matches_torch(n, d, seed, scale, general):
    g = _gen(seed)

    def draw():  # values in [-scale, scale]
        return (torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1) * scale

    mu, logvar = draw(), draw()
    prior = (draw(), draw()) if general else ()
    kl = losses.gaussian_kl(mu, logvar, *prior)
    assert kl.shape == (n,)
    assert torch.isfinite(kl).all()
    assert (kl >= 0).all()
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, *prior), rtol=1e-9, atol=1e-9)
    # float32 gives the same up to float32 rounding
    kl32 = losses.gaussian_kl(mu.float(), logvar.float(), *(p.float() for p in prior))
    assert torch.isfinite(kl32).all() and (kl32 >= 0).all()
    torch.testing.assert_close(kl32.double(), kl, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad input

def _raises(exc, name, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


def test_kl_bad_inputs_name_the_argument():
    mu, lv = torch.zeros(2, 3), torch.zeros(2, 3)
    _raises(TypeError, "mu", losses.gaussian_kl, torch.zeros(2, 3, dtype=torch.int64), lv)
    _raises(TypeError, "logvar", losses.gaussian_kl, mu, torch.zeros(2, 3, dtype=torch.int32))
    _raises(TypeError, "mu", losses.gaussian_kl, [[0.0, 0.0]], lv)
    _raises(ValueError, "mu", losses.gaussian_kl, torch.zeros(3), torch.zeros(3))
    _raises(ValueError, "logvar", losses.gaussian_kl, mu, torch.zeros(2, 4))
    _raises(TypeError, "mu_p", losses.gaussian_kl, mu, lv, 0.0, None)
    _raises(ValueError, "mu_p", losses.gaussian_kl, mu, lv, torch.zeros(4), None)
    _raises(ValueError, "logvar_p", losses.gaussian_kl, mu, lv, None, torch.zeros(5, 3))
    _raises(ValueError, "logvar_p", losses.gaussian_kl, mu, lv, None, torch.zeros(1, 2, 3))


def test_reconstruction_bad_inputs_name_the_argument():
    x = torch.rand(2, 1, 2, 2)
    _raises(TypeError, "logits", losses.bernoulli_nll, torch.zeros(2, 1, 2, 2, dtype=torch.int64), x)
    _raises(TypeError, "x", losses.bernoulli_nll, torch.zeros(2, 1, 2, 2), (x > 0.5).long())
    _raises(TypeError, "x", losses.bernoulli_nll, torch.zeros(2, 1, 2, 2), x.tolist())
    _raises(ValueError, "x", losses.bernoulli_nll, torch.zeros(2, 1, 2, 3), x)
    _raises(ValueError, "x", losses.bernoulli_nll, torch.zeros_like(x), x * 2)
    _raises(ValueError, "x", losses.bernoulli_nll, torch.zeros_like(x), x - 1)
    for bad in (float("nan"), float("inf"), -float("inf")):
        x_bad = x.clone()
        x_bad[0, 0, 0, 0] = bad
        _raises(ValueError, "x", losses.bernoulli_nll, torch.zeros_like(x), x_bad)
    _raises(TypeError, "mean", losses.gaussian_nll, torch.zeros(2, 1, 2, 2, dtype=torch.int64), x)
    _raises(ValueError, "mean", losses.gaussian_nll, torch.zeros(2, 4), x)
    _raises(ValueError, "likelihood", losses.reconstruction_nll, torch.zeros_like(x), x, "poisson")


def test_negative_elbo_bad_beta_and_likelihood():
    x = torch.rand(2, 1, 2, 2)
    z = torch.zeros(2, 3)
    for beta in (-1.0, float("nan"), float("inf"), "1", True):
        _raises(ValueError, "beta", losses.negative_elbo, torch.zeros_like(x), x, z, z, beta=beta)
    _raises(ValueError, "likelihood", losses.negative_elbo, torch.zeros_like(x), x, z, z, likelihood="poisson")
