"""Tests of vae_course.gaussian: the diagonal Gaussian's log-density and closed-form KL against
torch.distributions, Monte Carlo and autograd; the full-covariance KL; the Monte Carlo KL within
its standard errors; the KL's hand-derived gradients; the covariance check; the softplus
parameterization and the reparameterized sample; extreme and bad inputs (each error names its
argument)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import distributions as D
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vae_course import gaussian
from vae_course.gaussian import kl_gradients, kl_mvn, monte_carlo_kl_estimate
from helpers import assert_finite_with_finite_grads, gen, uniform
from helpers import raises_naming as _raises

_gen = gen  # one seeded generator per call (tests/helpers.py)
seeds = st.integers(0, 2**31 - 1)


def _random_spd(k: int, g: torch.Generator, batch: tuple[int, ...] = (), dtype=torch.float64) -> torch.Tensor:
    a = torch.randn(*batch, k, k, generator=g, dtype=dtype)
    return a @ a.transpose(-2, -1) + 0.5 * torch.eye(k, dtype=dtype)


def _reference_kl(mu, logvar, mu_p=None, logvar_p=None):
    """KL(q || p) summed over the last dim, computed by torch.distributions."""
    mu_p = torch.zeros_like(mu) if mu_p is None else mu_p
    logvar_p = torch.zeros_like(mu) if logvar_p is None else logvar_p
    q = Normal(mu, (0.5 * logvar).exp())
    p = Normal(mu_p.expand_as(mu), (0.5 * logvar_p).exp().expand_as(mu))
    return kl_divergence(q, p).sum(-1)


# ---------------------------------------------------------------- log-densities

def test_gaussian_log_prob_matches_torch_distributions_and_broadcasts():
    g = gen(1)
    z = torch.randn(5, 7, 3, generator=g, dtype=torch.float64)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 3, generator=g, dtype=torch.float64)
    expected = D.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    got = gaussian.log_prob(z, mu, logvar)
    assert got.shape == (5, 7)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(gaussian.log_prob(z), D.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_mixture_log_prob_matches_mixture_same_family():
    g = gen(2)
    k, d = 5, 3
    means = 2 * torch.randn(k, d, generator=g, dtype=torch.float64)
    logvars = torch.randn(k, d, generator=g, dtype=torch.float64)
    logits = torch.randn(k, generator=g, dtype=torch.float64)
    z = 3 * torch.randn(4, 6, d, generator=g, dtype=torch.float64)
    reference = D.MixtureSameFamily(D.Categorical(logits=logits),
                                    D.Independent(D.Normal(means, (0.5 * logvars).exp()), 1))
    got = gaussian.mixture_log_prob(z, means, logvars, logits)
    assert got.shape == (4, 6)
    torch.testing.assert_close(got, reference.log_prob(z))


def test_mixture_log_prob_stays_finite_far_from_every_component():
    # Naively, exp(log N) underflows to 0 here and log(0) = -inf; the logsumexp does not.
    means, logvars, logits = torch.zeros(3, 2), torch.full((3, 2), -4.0), torch.zeros(3)
    value = gaussian.mixture_log_prob(torch.full((1, 2), 50.0), means, logvars, logits)
    assert torch.isfinite(value).all() and value.item() < -1e4


def test_mixture_of_one_standard_normal_is_the_standard_normal():
    z = torch.randn(10, 4, generator=gen(3))
    one = gaussian.mixture_log_prob(z, torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1))
    torch.testing.assert_close(one, gaussian.log_prob(z))


@pytest.mark.parametrize("bad, name", [
    (dict(means=torch.zeros(3)), "means"),
    (dict(logvars=torch.zeros(2, 2)), "logvars"),
    (dict(logits=torch.zeros(2)), "logits"),
    (dict(z=torch.zeros(4, 5)), "z"),
    (dict(logits=torch.zeros(3, dtype=torch.int64)), "logits"),
])


def test_mixture_log_prob_rejects_bad_shapes_naming_the_argument(bad, name):
    args = dict(z=torch.zeros(4, 2), means=torch.zeros(3, 2), logvars=torch.zeros(3, 2), logits=torch.zeros(3))
    args.update(bad)
    with pytest.raises((ValueError, TypeError), match=name):
        gaussian.mixture_log_prob(**args)


# ---------------------------------------------------------------- the diagonal KL, closed form

def test_kl_standard_prior_matches_torch_distributions():
    g = _gen(0)
    mu = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    kl = gaussian.kl(mu, logvar)
    assert kl.shape == (7,)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar), rtol=1e-10, atol=1e-10)


def test_kl_general_prior_matches_torch_distributions():
    g = _gen(1)
    mu, logvar, mu_p, logvar_p = (torch.randn(6, 4, generator=g, dtype=torch.float64) * 1.5 for _ in range(4))
    kl = gaussian.kl(mu, logvar, mu_p, logvar_p)
    assert kl.shape == (6,)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, mu_p, logvar_p), rtol=1e-10, atol=1e-10)


def test_kl_broadcast_prior_of_shape_D():
    g = _gen(2)
    mu, logvar = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2))
    mu_p = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar_p = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    kl = gaussian.kl(mu, logvar, mu_p, logvar_p)
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, mu_p, logvar_p), rtol=1e-10, atol=1e-10)
    # the same as giving the prior row by row
    full = gaussian.kl(mu, logvar, mu_p.expand(5, 3), logvar_p.expand(5, 3))
    torch.testing.assert_close(kl, full)


def test_kl_only_mu_p_or_only_logvar_p_defaults_the_other_to_standard():
    g = _gen(3)
    mu, logvar, other = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(3))
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    torch.testing.assert_close(gaussian.kl(mu, logvar, mu_p=other),
                               _reference_kl(mu, logvar, other, zeros))
    torch.testing.assert_close(gaussian.kl(mu, logvar, logvar_p=other),
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
    kl = gaussian.kl(mu, logvar, *((mu_p, logvar_p) if general_prior else ())).item()
    assert abs(kl - mc) < 4 * se, (kl, mc, se)


def test_kl_nonnegative_and_zero_when_q_equals_prior():
    g = _gen(5)
    mu = torch.randn(50, 6, generator=g)
    logvar = torch.randn(50, 6, generator=g) * 3
    assert (gaussian.kl(mu, logvar) >= 0).all()
    assert (gaussian.kl(mu, logvar, torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)) >= 0).all()
    assert torch.equal(gaussian.kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    torch.testing.assert_close(gaussian.kl(mu, logvar, mu, logvar), torch.zeros(50), atol=1e-6, rtol=0)
    # and strictly positive as soon as q differs from the prior
    assert (gaussian.kl(torch.full((1, 2), 0.1), torch.zeros(1, 2)) > 0).all()
    assert (gaussian.kl(torch.zeros(1, 2), torch.full((1, 2), 0.1)) > 0).all()


def test_kl_float32_near_the_prior_is_nonnegative_and_accurate():
    """q within rounding of the prior: exp(v) - v - 1 cancels in float32; the KL must stay >= 0."""
    small = torch.logspace(-7, -2, 60).view(-1, 1).expand(60, 3)
    for sign in (1.0, -1.0):
        logvar = (sign * small).contiguous()
        mu = torch.zeros_like(logvar)
        for args in ((mu, logvar), (mu, logvar, torch.zeros(3), torch.zeros(3)),
                     (mu + 0.5, logvar + 0.25, torch.full((3,), 0.5), torch.full((3,), 0.25))):
            kl = gaussian.kl(*args)
            assert kl.dtype == torch.float32
            assert (kl >= 0).all(), kl.min()
            ref = _reference_kl(*(a.double() for a in args))  # the same float32 inputs, in float64
            torch.testing.assert_close(kl.double(), ref, rtol=1e-3, atol=1e-11)


def test_kl_is_summed_over_latent_dimensions():
    mu = torch.full((2, 1), 1.0)
    one = gaussian.kl(mu, torch.zeros(2, 1))
    torch.testing.assert_close(one, torch.full((2,), 0.5))  # 1/2 * mu^2
    ten = gaussian.kl(torch.ones(2, 10), torch.zeros(2, 10))
    torch.testing.assert_close(ten, torch.full((2,), 5.0))


@pytest.mark.parametrize("lv", [100.0, -100.0])


@pytest.mark.parametrize("m", [0.0, 1e3, -1e3])


def test_kl_finite_for_extreme_logvar_and_mu(lv, m):
    mu = torch.full((2, 3), m, requires_grad=True)
    logvar = torch.full((2, 3), lv, requires_grad=True)
    assert_finite_with_finite_grads(gaussian.kl(mu, logvar), mu, logvar)
    mu2 = torch.full((2, 3), m, requires_grad=True)
    logvar2 = torch.full((2, 3), lv, requires_grad=True)
    logvar_p = torch.full((3,), -lv, requires_grad=True)
    mu_p = torch.zeros(3, requires_grad=True)
    assert_finite_with_finite_grads(gaussian.kl(mu2, logvar2, mu_p, logvar_p), mu2, logvar2, mu_p, logvar_p)


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
    kl = gaussian.kl(mu, logvar, *prior)
    assert kl.shape == (n,)
    assert torch.isfinite(kl).all()
    assert (kl >= 0).all()
    torch.testing.assert_close(kl, _reference_kl(mu, logvar, *prior), rtol=1e-9, atol=1e-9)
    # float32 gives the same up to float32 rounding
    kl32 = gaussian.kl(mu.float(), logvar.float(), *(p.float() for p in prior))
    assert torch.isfinite(kl32).all() and (kl32 >= 0).all()
    torch.testing.assert_close(kl32.double(), kl, rtol=1e-4, atol=1e-4)


def test_kl_bad_inputs_name_the_argument():
    mu, lv = torch.zeros(2, 3), torch.zeros(2, 3)
    _raises(TypeError, "mu", gaussian.kl, torch.zeros(2, 3, dtype=torch.int64), lv)
    _raises(TypeError, "logvar", gaussian.kl, mu, torch.zeros(2, 3, dtype=torch.int32))
    _raises(TypeError, "mu", gaussian.kl, [[0.0, 0.0]], lv)
    _raises(ValueError, "mu", gaussian.kl, torch.zeros(3), torch.zeros(3))
    _raises(ValueError, "logvar", gaussian.kl, mu, torch.zeros(2, 4))
    _raises(TypeError, "mu_p", gaussian.kl, mu, lv, 0.0, None)
    _raises(ValueError, "mu_p", gaussian.kl, mu, lv, torch.zeros(4), None)
    _raises(ValueError, "logvar_p", gaussian.kl, mu, lv, None, torch.zeros(5, 3))
    _raises(ValueError, "logvar_p", gaussian.kl, mu, lv, None, torch.zeros(1, 2, 3))


def test_kl_per_dim_matches_torch_distributions_and_sums_to_kl():
    g = gen(0)
    mu, logvar = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    mu_p, logvar_p = torch.randn(4, generator=g, dtype=torch.float64), torch.randn(4, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    for prior, args in ((torch.distributions.Normal(0.0, 1.0), ()),
                        (torch.distributions.Normal(mu_p, (0.5 * logvar_p).exp()), (mu_p, logvar_p))):
        per_dim = gaussian.kl_per_dim(mu, logvar, *args)
        assert per_dim.shape == (5, 4)
        torch.testing.assert_close(per_dim, torch.distributions.kl_divergence(q, prior))
        torch.testing.assert_close(gaussian.kl(mu, logvar, *args), per_dim.sum(1))


@settings(max_examples=80, deadline=None)


@given(n=st.integers(1, 6), d=st.integers(1, 10), seed=seeds, scale=st.floats(0.0, 8.0),
       dim=st.integers(0, 9), delta=st.floats(0.05, 3.0), which=st.sampled_from(["mu", "logvar"]))


def test_kl_is_zero_exactly_when_q_equals_p(n, d, seed, scale, dim, delta, which):
    g = gen(seed)
    mu, logvar = uniform(g, (n, d), -scale, scale), uniform(g, (n, d), -scale, scale)
    same = gaussian.kl(mu, logvar, mu, logvar)
    assert same.shape == (n,) and torch.equal(same, torch.zeros(n, dtype=torch.float64))
    if scale == 0:  # q = N(0, I) = the standard prior
        assert torch.equal(gaussian.kl(mu, logvar), torch.zeros(n, dtype=torch.float64))
    # move one coordinate of p away from q: every example's KL becomes > 0
    mu_p, logvar_p = mu.clone(), logvar.clone()
    (mu_p if which == "mu" else logvar_p)[:, dim % d] += delta
    kl = gaussian.kl(mu, logvar, mu_p, logvar_p)
    assert (kl > 0).all(), kl
    for f in (torch.float32, torch.float64):  # never negative, in either precision
        assert (gaussian.kl(mu.to(f), logvar.to(f), mu_p.to(f), logvar_p.to(f)) >= 0).all()


# ---------------------------------------------------------------- the full-covariance KL

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


def test_kl_mvn_diagonal_equals_the_diagonal_kl():
    g = _gen(6)
    mu = torch.randn(7, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64)
    mu_p = torch.randn(5, generator=g, dtype=torch.float64)
    logvar_p = torch.randn(5, generator=g, dtype=torch.float64)
    full = kl_mvn(mu, torch.diag_embed(logvar.exp()), mu_p, torch.diag(logvar_p.exp()))
    assert torch.allclose(full, gaussian.kl(mu, logvar, mu_p, logvar_p), rtol=1e-10)
    full_std = kl_mvn(mu, torch.diag_embed(logvar.exp()), torch.zeros(5, dtype=torch.float64),
                      torch.eye(5, dtype=torch.float64))
    assert torch.allclose(full_std, gaussian.kl(mu, logvar), rtol=1e-10)


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


# ---------------------------------------------------------------- the Monte Carlo KL

def test_monte_carlo_kl_within_standard_errors_of_closed_form():
    g = _gen(10)
    mu = torch.randn(16, 4, generator=g)
    logvar = 0.8 * torch.randn(16, 4, generator=g)
    est, se = monte_carlo_kl_estimate(mu, logvar, 4000, generator=_gen(11))
    exact = gaussian.kl(mu.double(), logvar.double())
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
    est, se = monte_carlo_kl_estimate(mu, logvar, 5000, generator=_gen(13), mu_p=mu_p, logvar_p=logvar_p)
    ref = kl_divergence(Normal(mu.double(), (0.5 * logvar.double()).exp()),
                        Normal(mu_p.double(), (0.5 * logvar_p.double()).exp())).sum(-1)
    assert float(((est - ref) / se).abs().max()) < 5.0


def test_monte_carlo_kl_is_exactly_zero_when_q_equals_p():
    g = _gen(14)
    mu, logvar = torch.randn(3, 2, generator=g), torch.randn(3, 2, generator=g)
    est, se = monte_carlo_kl_estimate(mu, logvar, 50, generator=_gen(0), mu_p=mu, logvar_p=logvar)
    assert torch.allclose(est, torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(se, torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_monte_carlo_kl_standard_error_shrinks_like_one_over_sqrt_n():
    mu, logvar = torch.full((1, 3), 0.5), torch.full((1, 3), -0.7)
    _, se_small = monte_carlo_kl_estimate(mu, logvar, 400, generator=_gen(1))
    _, se_big = monte_carlo_kl_estimate(mu, logvar, 40000, generator=_gen(2))
    assert 0.07 < float(se_big / se_small) < 0.14  # ideal: 0.1


def test_monte_carlo_kl_chunked_equals_unchunked(monkeypatch):
    """Samples drawn in chunks of 7 give the mean and standard error of all 1000 samples drawn at
    once (the same noise is fed to both runs)."""
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
        monkeypatch.setattr(gaussian, "_CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(torch, "randn", fake_randn)
        try:
            results.append(monte_carlo_kl_estimate(mu, logvar, 1000))
        finally:
            monkeypatch.setattr(torch, "randn", real_randn)
        assert used == 1000
    (est1, se1), (est2, se2) = results
    assert torch.allclose(est1, est2, rtol=1e-10) and torch.allclose(se1, se2, rtol=1e-8)
    z = mu.double() + (0.5 * logvar.double()).exp() * noise
    ratio = gaussian.log_prob(z, mu.double(), logvar.double()) - gaussian.log_prob(
        z, torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(est1, ratio.mean(0)) and torch.allclose(se1, ratio.std(0) / math.sqrt(1000))


def test_monte_carlo_kl_is_reproducible_with_a_generator():
    mu, logvar = torch.zeros(2, 2), torch.ones(2, 2)
    a = monte_carlo_kl_estimate(mu, logvar, 100, generator=_gen(7))
    b = monte_carlo_kl_estimate(mu, logvar, 100, generator=_gen(7))
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
        monte_carlo_kl_estimate(**kwargs)


# ---------------------------------------------------------------- the KL's gradients

def test_kl_hand_gradients_match_autograd():
    """dKL/dmu = mu and dKL/dsigma^2 = 1/2 - 1/(2 sigma^2) (standard normal prior)."""
    g = _gen(6)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    sigma2 = (torch.rand(4, 3, generator=g, dtype=torch.float64) * 3 + 0.1).requires_grad_()
    gaussian.kl(mu, sigma2.log()).sum().backward()
    torch.testing.assert_close(mu.grad, mu.detach())
    torch.testing.assert_close(sigma2.grad, 0.5 - 1 / (2 * sigma2.detach()))


def test_kl_gradients_match_autograd():
    g = _gen(20)
    mu = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    hand = kl_gradients(mu.detach(), logvar.detach())
    d_mu, d_logvar = torch.autograd.grad(gaussian.kl(mu, logvar).sum(), (mu, logvar))
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


# ---------------------------------------------------------------- softplus parameterization

def test_softplus_std_and_its_inverse():
    s = torch.linspace(-20, 30, 101, dtype=torch.float64)
    std = gaussian.softplus_std(s)
    assert torch.allclose(std, F.softplus(s)) and bool((std > 0).all())
    assert torch.allclose(gaussian.inverse_softplus(std), s, rtol=1e-9, atol=1e-9)
    floored = gaussian.softplus_std(torch.tensor([-200.0]), min_std=1e-4)
    assert float(floored) == pytest.approx(1e-4)


def test_softplus_std_gradient_is_sigmoid():
    s = torch.linspace(-8, 8, 33, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(gaussian.softplus_std(s).sum(), s)
    assert torch.allclose(grad, torch.sigmoid(s.detach()))


def test_softplus_bad_inputs():
    with pytest.raises(TypeError, match="s"):
        gaussian.softplus_std(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="min_std"):
        gaussian.softplus_std(torch.zeros(2), min_std=-1.0)
    with pytest.raises(ValueError, match="std"):
        gaussian.inverse_softplus(torch.tensor([1.0, 0.0]))


# ---------------------------------------------------------------- one-sample Monte Carlo KL terms (priors with no closed form)

def test_monte_carlo_kl_converges_to_the_closed_form():
    """With the prior N(0, I) (a mixture of one standard normal) the KL has a closed form; the
    mean of many one-sample estimates must agree with it within a few standard errors."""
    g = gen(4)
    mu = torch.randn(3, 2, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    n = 200_000
    z = mu + (0.5 * logvar).exp() * torch.randn(n, 3, 2, generator=g, dtype=torch.float64)
    log_prior = gaussian.mixture_log_prob(z, torch.zeros(1, 2, dtype=torch.float64),
                                        torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    estimates = gaussian.monte_carlo_kl(z, mu.expand_as(z), logvar.expand_as(z), log_prior)  # (n, 3)
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(n)
    exact = gaussian.kl(mu, logvar)
    assert ((mean - exact).abs() < 4 * stderr).all(), (mean, exact, stderr)
    assert (stderr < 0.01).all()
    assert (estimates < 0).any(), "single estimates can be negative; only their mean is the KL"


def test_monte_carlo_kl_terms_are_log_q_minus_log_p_and_average_to_the_kl():
    g = _gen(40)
    mu, logvar = torch.randn(3, 2, generator=g, dtype=torch.float64), 0.5 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    z = gaussian.reparameterize(mu, logvar, torch.randn(20000, 3, 2, generator=g, dtype=torch.float64))
    terms = gaussian.monte_carlo_kl(z, mu, logvar, gaussian.log_prob(z))
    assert terms.shape == (20000, 3)
    q = Normal(mu, (0.5 * logvar).exp())
    torch.testing.assert_close(terms, q.log_prob(z).sum(-1) - Normal(0.0, 1.0).log_prob(z).sum(-1))
    se = terms.std(0) / math.sqrt(len(terms))
    assert float(((terms.mean(0) - gaussian.kl(mu, logvar)) / se).abs().max()) < 5


def test_monte_carlo_kl_terms_pass_gradients_to_q():
    mu = torch.zeros(2, 3, requires_grad=True)
    logvar = torch.zeros(2, 3, requires_grad=True)
    z = gaussian.reparameterize(mu, logvar, torch.full((2, 3), 2.0))
    gaussian.monte_carlo_kl(z, mu, logvar, gaussian.log_prob(z)).sum().backward()
    assert mu.grad is not None and logvar.grad is not None and bool(logvar.grad.abs().sum() > 0)


def test_monte_carlo_kl_terms_bad_inputs_name_the_argument():
    z = torch.zeros(4, 3)
    _raises(ValueError, "z", gaussian.monte_carlo_kl, z, torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(4))
    _raises(ValueError, "logvar", gaussian.monte_carlo_kl, z, z, torch.zeros(4, 2), torch.zeros(4))
    _raises(ValueError, "log_prior", gaussian.monte_carlo_kl, z, z, z, torch.zeros(3))
    _raises(TypeError, "log_prior", gaussian.monte_carlo_kl, z, z, z, [0.0] * 4)


# ---------------------------------------------------------------- the 1-D KL, the covariance check, sampling

def test_kl_1d_is_the_one_dimensional_formula_and_refuses_a_bad_sigma():
    for m, s in ((0.0, 1.0), (0.7, 1.9), (-2.0, 0.1)):
        assert gaussian.kl_1d(m, s) == pytest.approx(0.5 * (s * s - math.log(s * s) - 1 + m * m), rel=1e-12, abs=1e-15)
    assert gaussian.kl_1d(0.0, 1.0) == 0.0
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        _raises(ValueError, "sigma", gaussian.kl_1d, 0.0, bad)
    _raises(ValueError, "mu", gaussian.kl_1d, float("inf"), 1.0)


def test_check_covariance_returns_the_cholesky_factor_and_names_what_is_wrong():
    cov = _random_spd(3, _gen(41), (2,))
    chol = gaussian.check_covariance(cov, "S")
    assert chol.dtype == torch.float64 and chol.shape == (2, 3, 3)
    torch.testing.assert_close(chol @ chol.mT, cov)
    assert gaussian.check_covariance(cov, "S", 3).shape == (2, 3, 3)
    _raises(ValueError, "(..., 4, 4)", gaussian.check_covariance, cov, "S", 4)
    _raises(ValueError, "S", gaussian.check_covariance, torch.zeros(3), "S")
    _raises(ValueError, "symmetric", gaussian.check_covariance, torch.tensor([[1.0, 0.5], [0.0, 1.0]]), "S")
    _raises(ValueError, "positive-definite", gaussian.check_covariance, torch.tensor([[1.0, 2.0], [2.0, 1.0]]), "S")
    _raises(ValueError, "S", gaussian.check_covariance, torch.full((2, 2), float("nan")), "S")
    _raises(TypeError, "S", gaussian.check_covariance, torch.eye(2, dtype=torch.int64), "S")
    # float32 rounding of a symmetric matrix is accepted; a real asymmetry in float64 is not
    gaussian.check_covariance(cov.float() + 1e-6 * torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), "S")
    bent = cov.clone()
    bent[0, 0, 1] += 1e-6 * float(cov.abs().max())
    _raises(ValueError, "symmetric", gaussian.check_covariance, bent, "S")


def test_reparameterize_is_mu_plus_sigma_eps_and_clamps_the_log_variance():
    g = _gen(42)
    mu, logvar, eps = (torch.randn(4, 3, generator=g) for _ in range(3))
    torch.testing.assert_close(gaussian.reparameterize(mu, logvar, eps), mu + (0.5 * logvar).exp() * eps)
    huge = gaussian.reparameterize(torch.zeros(1, 1), torch.full((1, 1), 1000.0), torch.ones(1, 1))
    assert float(huge) == pytest.approx(math.exp(0.5 * gaussian.LOGVAR_MAX), rel=1e-6)
    torch.manual_seed(0)
    z = gaussian.reparameterize(torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(0.25)))
    assert abs(float(z.mean()) - 2.0) < 0.02 and abs(float(z.std()) - 0.5) < 0.02
    torch.testing.assert_close(gaussian.clamp_logvar(torch.tensor([-100.0, 0.5, 100.0])), torch.tensor([-30.0, 0.5, 30.0]))
