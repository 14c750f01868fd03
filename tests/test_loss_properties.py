"""Property-based tests (hypothesis) of vae_course.losses over random shapes and values.

What must hold for every shape and value: KL >= 0, with KL = 0 exactly when q = p and > 0 when
they differ; the Bernoulli term >= 0 and equal to torch's binary cross-entropy on sigmoid
outputs and to torch.distributions; the Gaussian term equal to torch.distributions; the
negative ELBO = reconstruction + beta * KL; one number per example. (The KL against
torch.distributions over random values is tests/test_losses.py's property test.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Normal

from vae_course import losses
from helpers import gen

shapes = st.tuples(st.integers(1, 6), st.integers(1, 3), st.integers(1, 5), st.integers(1, 5))  # (N, C, H, W)
seeds = st.integers(0, 2**31 - 1)


def _uniform(g, shape, low, high):
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 6), d=st.integers(1, 10), seed=seeds, scale=st.floats(0.0, 8.0),
       dim=st.integers(0, 9), delta=st.floats(0.05, 3.0), which=st.sampled_from(["mu", "logvar"]))
def test_kl_is_zero_exactly_when_q_equals_p(n, d, seed, scale, dim, delta, which):
    g = gen(seed)
    mu, logvar = _uniform(g, (n, d), -scale, scale), _uniform(g, (n, d), -scale, scale)
    same = losses.gaussian_kl(mu, logvar, mu, logvar)
    assert same.shape == (n,) and torch.equal(same, torch.zeros(n, dtype=torch.float64))
    if scale == 0:  # q = N(0, I) = the standard prior
        assert torch.equal(losses.gaussian_kl(mu, logvar), torch.zeros(n, dtype=torch.float64))
    # move one coordinate of p away from q: every example's KL becomes > 0
    mu_p, logvar_p = mu.clone(), logvar.clone()
    (mu_p if which == "mu" else logvar_p)[:, dim % d] += delta
    kl = losses.gaussian_kl(mu, logvar, mu_p, logvar_p)
    assert (kl > 0).all(), kl
    for f in (torch.float32, torch.float64):  # never negative, in either precision
        assert (losses.gaussian_kl(mu.to(f), logvar.to(f), mu_p.to(f), logvar_p.to(f)) >= 0).all()


@settings(max_examples=80, deadline=None)
@given(shape=shapes, seed=seeds, scale=st.floats(0.0, 12.0), binary=st.booleans())
def test_bernoulli_nll_is_nonnegative_and_matches_torch(shape, seed, scale, binary):
    g = gen(seed)
    logits = _uniform(g, shape, -scale, scale)
    x = _uniform(g, shape, 0.0, 1.0)
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
def test_gaussian_nll_matches_torch_distributions(shape, seed, logvar):
    g = gen(seed)
    mean, x = _uniform(g, shape, -2, 2), _uniform(g, shape, 0, 1)
    nll = losses.gaussian_nll(mean, x, logvar)
    reference = -Normal(mean, torch.tensor(logvar, dtype=torch.float64).mul(0.5).exp()).log_prob(x).flatten(1).sum(1)
    assert nll.shape == (shape[0],)
    torch.testing.assert_close(nll, reference, rtol=1e-9, atol=1e-9)


@settings(max_examples=80, deadline=None)
@given(shape=shapes, d=st.integers(1, 8), seed=seeds, beta=st.floats(0.0, 10.0),
       likelihood=st.sampled_from(losses.LIKELIHOODS[:2]))
def test_negative_elbo_is_reconstruction_plus_beta_kl_per_example(shape, d, seed, beta, likelihood):
    g = gen(seed)
    out, x = _uniform(g, shape, -4, 4), _uniform(g, shape, 0, 1)
    mu, logvar = _uniform(g, (shape[0], d), -3, 3), _uniform(g, (shape[0], d), -3, 3)
    parts = losses.negative_elbo(out, x, mu, logvar, beta=beta, likelihood=likelihood)
    assert all(p.shape == (shape[0],) for p in parts)
    torch.testing.assert_close(parts.reconstruction, losses.reconstruction_nll(out, x, likelihood))
    torch.testing.assert_close(parts.kl, losses.gaussian_kl(mu, logvar))
    torch.testing.assert_close(parts.total, parts.reconstruction + beta * parts.kl, rtol=1e-12, atol=1e-12)
    # per example: example i's loss depends on example i only
    first = losses.negative_elbo(out[:1], x[:1], mu[:1], logvar[:1], beta=beta, likelihood=likelihood)
    torch.testing.assert_close(first.total, parts.total[:1])
