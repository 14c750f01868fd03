"""Tests of vae_course.losses: the decoder likelihoods (Bernoulli, Gaussian, continuous Bernoulli)
against torch.distributions and numerical integration, free bits and the negative ELBO; units
(nats per example, summed); property-based checks over random shapes and values (hypothesis);
extreme inputs; bad inputs. (The Gaussian KL is tests/test_gaussian.py's.)"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal

from vae_course import gaussian, losses
from helpers import assert_finite_with_finite_grads, gen, uniform
from helpers import raises_naming as _raises

_gen = gen  # one seeded generator per call (tests/helpers.py)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))  # (N, C, H, W)
seeds = st.integers(0, 2**31 - 1)


# ---------------------------------------------------------------- Bernoulli and Gaussian likelihoods

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


@settings(max_examples=80, deadline=None)


@given(shape=shapes, seed=seeds, scale=st.floats(0.0, 12.0), binary=st.booleans())


def test_bernoulli_nll_is_nonnegative_and_matches_torch(shape, seed, scale, binary):
    g = gen(seed)
    logits = uniform(g, shape, -scale, scale)
    x = uniform(g, shape, 0.0, 1.0)
    if binary:
        x = (x > 0.5).double()
    nll = losses.bernoulli_nll(logits, x)
    assert nll.shape == (shape[0],) and (nll >= 0).all()
    # the summed BCE on sigmoid outputs (how pytorch/examples' VAE computes it): equal while
    # sigmoid does not round to 0 or 1 (|logits| <= 12 in float64 is far from that)
    bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(nll, bce, rtol=1e-9, atol=1e-9)
    if binary:  # a true log-likelihood: torch.distributions agrees
        reference = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(nll, reference, rtol=1e-9, atol=1e-9)
    # float32 from logits stays finite where sigmoid outputs would round to exactly 0 or 1
    huge = losses.bernoulli_nll(logits.float() * 100, x.float())
    assert torch.isfinite(huge).all() and (huge >= 0).all()


@settings(max_examples=60, deadline=None)


@given(shape=shapes, seed=seeds, logvar=st.floats(-5.0, 5.0))


def test_gaussian_nll_property_matches_torch_distributions(shape, seed, logvar):
    g = gen(seed)
    mean, x = uniform(g, shape, -2, 2), uniform(g, shape, 0, 1)
    nll = losses.gaussian_nll(mean, x, logvar)
    reference = -Normal(mean, torch.tensor(logvar, dtype=torch.float64).mul(0.5).exp()).log_prob(x).flatten(1).sum(1)
    assert nll.shape == (shape[0],)
    torch.testing.assert_close(nll, reference, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- the continuous Bernoulli


LOGITS = torch.tensor([-30.0, -8.0, -2.0, -0.7, -0.5, -0.49, -0.1, -1e-6, 0.0, 1e-4, 0.3, 0.5, 0.51, 1.5, 6.0, 15.0],
                      dtype=torch.float64)


def test_continuous_bernoulli_log_norm_matches_numerical_integration():
    # C(lambda) normalizes lambda^x (1 - lambda)^(1 - x) on [0, 1]: log C = -log of its integral
    x = torch.linspace(0.0, 1.0, 400_001, dtype=torch.float64)
    lam = torch.sigmoid(LOGITS)[:, None]
    integral = torch.trapezoid(lam.pow(x) * (1 - lam).pow(1 - x), x, dim=1)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(LOGITS), -integral.log(), rtol=0, atol=1e-8)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(torch.zeros(1)), torch.tensor([math.log(2)]))


def test_continuous_bernoulli_matches_torch_distributions():
    inner = LOGITS[LOGITS.abs() < 6]  # torch clamps probabilities near 0 and 1; compare where it does not
    lib = torch.distributions.ContinuousBernoulli(logits=inner)
    torch.testing.assert_close(losses.continuous_bernoulli_log_norm(inner), lib._cont_bern_log_norm(), rtol=0, atol=1e-7)
    xs = torch.rand(len(inner), generator=gen(0), dtype=torch.float64)
    ours = -losses.continuous_bernoulli_nll(inner[:, None], xs[:, None])
    torch.testing.assert_close(ours, lib.log_prob(xs), rtol=0, atol=1e-7)


def test_continuous_bernoulli_gradient_is_smooth_across_the_series_switch():
    eta = torch.linspace(-1.0, 1.0, 2001, dtype=torch.float32, requires_grad=True)
    (grad,) = torch.autograd.grad(losses.continuous_bernoulli_log_norm(eta).sum(), eta)
    # d log C / d eta = 1/eta - 1/sinh(eta) (float64 reference; -> eta/6 at 0)
    e = eta.detach().double()
    exact = torch.where(e.abs() < 1e-3, e / 6, 1 / e - 1 / torch.sinh(e))
    torch.testing.assert_close(grad.double(), exact, rtol=0, atol=2e-5)


def test_grayscale_bce_is_not_normalized_and_the_continuous_bernoulli_is():
    x = torch.linspace(0.0, 1.0, 100_001, dtype=torch.float64)[:, None]
    logits = torch.full_like(x, 0.0)
    bce_density = torch.exp(-losses.bernoulli_nll(logits, x))                  # lambda = 1/2: 1/2 everywhere
    cb_density = torch.exp(-losses.continuous_bernoulli_nll(logits, x))
    assert math.isclose(float(torch.trapezoid(bce_density, x[:, 0])), 0.5, rel_tol=1e-9)
    assert math.isclose(float(torch.trapezoid(cb_density, x[:, 0])), 1.0, rel_tol=1e-9)
    # and the BCE of a gray pixel is not 0 at its best logit: min over logits of BCE(., 0.5) = log 2
    best = losses.bernoulli_nll(torch.zeros(1, 1, dtype=torch.float64), torch.full((1, 1), 0.5, dtype=torch.float64))
    assert math.isclose(float(best), math.log(2), rel_tol=1e-12)


# ---------------------------------------------------------------- free bits

def _kl_rows():
    """Per-dimension KLs with batch means 0.1, 0.5 and 2.0 nats (and per-example spread)."""
    mu = torch.tensor([[0.2, 0.9, 2.0], [0.6, 1.1, 2.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    mu = mu * torch.sqrt(torch.tensor([0.2, 1.0, 4.0], dtype=torch.float64) / mu.pow(2).mean(0))
    return mu.requires_grad_(True), torch.zeros_like(mu)


def test_free_bits_batch_mean_is_sum_of_max_lambda_and_mean_kl():
    mu, logvar = _kl_rows()
    per_dim = gaussian.kl_per_dim(mu, logvar)
    torch.testing.assert_close(per_dim.mean(0), torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64))
    for lam in (0.0, 0.3, 1.0, 3.0):
        term = losses.free_bits_kl(per_dim, lam)
        assert term.shape == (3,)
        expected = torch.clamp(per_dim.mean(0), min=lam).sum()
        torch.testing.assert_close(term.mean(), expected)
    torch.testing.assert_close(losses.free_bits_kl(per_dim, 0.0), per_dim.sum(1))


def test_free_bits_removes_the_gradient_only_below_lambda():
    mu, logvar = _kl_rows()
    (plain,) = torch.autograd.grad(gaussian.kl(mu, logvar).mean(), mu)
    (free,) = torch.autograd.grad(losses.free_bits_kl(gaussian.kl_per_dim(mu, logvar), 1.0).mean(), mu)
    # dimensions 0 and 1 (mean KL 0.1 and 0.5 nats < 1) get no KL gradient; dimension 2 keeps it
    assert torch.all(free[:, :2] == 0) and torch.all(plain[:, :2].abs().sum(0) > 0)
    torch.testing.assert_close(free[:, 2], plain[:, 2])


# ---------------------------------------------------------------- the negative ELBO

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
    torch.testing.assert_close(parts.kl, gaussian.kl(mu, logvar))
    torch.testing.assert_close(parts.total, recon + beta * parts.kl)
    assert parts.total.shape == parts.reconstruction.shape == parts.kl.shape == (5,)


def test_negative_elbo_gaussian_uses_decoder_logvar():
    g = _gen(14)
    out, x = torch.randn(2, 1, 2, 2, generator=g), torch.rand(2, 1, 2, 2, generator=g)
    mu, logvar = torch.zeros(2, 1), torch.zeros(2, 1)
    parts = losses.negative_elbo(out, x, mu, logvar, likelihood="gaussian", decoder_logvar=-2.0)
    torch.testing.assert_close(parts.reconstruction, losses.gaussian_nll(out, x, -2.0))


@settings(max_examples=80, deadline=None)


@given(shape=shapes, d=st.integers(1, 8), seed=seeds, beta=st.floats(0.0, 10.0),
       likelihood=st.sampled_from(losses.LIKELIHOODS[:2]))


def test_negative_elbo_is_reconstruction_plus_beta_kl_per_example(shape, d, seed, beta, likelihood):
    g = gen(seed)
    out, x = uniform(g, shape, -4, 4), uniform(g, shape, 0, 1)
    mu, logvar = uniform(g, (shape[0], d), -3, 3), uniform(g, (shape[0], d), -3, 3)
    parts = losses.negative_elbo(out, x, mu, logvar, beta=beta, likelihood=likelihood)
    assert all(p.shape == (shape[0],) for p in parts)
    torch.testing.assert_close(parts.reconstruction, losses.reconstruction_nll(out, x, likelihood))
    torch.testing.assert_close(parts.kl, gaussian.kl(mu, logvar))
    torch.testing.assert_close(parts.total, parts.reconstruction + beta * parts.kl, rtol=1e-12, atol=1e-12)
    # per example: example i's loss depends on example i only
    first = losses.negative_elbo(out[:1], x[:1], mu[:1], logvar[:1], beta=beta, likelihood=likelihood)
    torch.testing.assert_close(first.total, parts.total[:1])


# ---------------------------------------------------------------- extreme values

@pytest.mark.parametrize("big", [100.0, -100.0])


def test_bernoulli_nll_finite_for_extreme_logits(big):
    logits = torch.full((2, 1, 2, 2), big, requires_grad=True)
    x = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(1, 1, 2, 2).expand(2, 1, 2, 2).contiguous()
    nll = losses.bernoulli_nll(logits, x)
    assert_finite_with_finite_grads(nll, logits)
    # a confident wrong prediction costs about |logit| nats per pixel
    wrong = 1.0 if big < 0 else 0.0
    cost = losses.bernoulli_nll(torch.full((1, 1), big), torch.full((1, 1), wrong))
    assert cost.item() == pytest.approx(100.0, rel=1e-4)


@pytest.mark.parametrize("lv", [100.0, -100.0])


def test_gaussian_nll_finite_for_extreme_logvar(lv):
    mean = torch.randn(2, 1, 2, 2, generator=_gen(15)).mul(1e3).requires_grad_()
    x = torch.rand(2, 1, 2, 2, generator=_gen(16))
    logvar = torch.full((2, 1, 2, 2), lv, requires_grad=True)
    assert_finite_with_finite_grads(losses.gaussian_nll(mean, x, logvar), mean, logvar)


def test_negative_elbo_finite_for_extreme_encoder_outputs():
    out = torch.full((2, 1, 2, 2), -100.0, requires_grad=True)
    x = torch.ones(2, 1, 2, 2)
    mu = torch.tensor([[1e3, -1e3], [0.0, 0.0]], requires_grad=True)
    logvar = torch.tensor([[100.0, -100.0], [-100.0, 100.0]], requires_grad=True)
    assert_finite_with_finite_grads(losses.negative_elbo(out, x, mu, logvar).total, out, mu, logvar)


# ---------------------------------------------------------------- bad input

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
