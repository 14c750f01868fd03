"""Tests of vae_course.linear_gaussian: the exact linear-Gaussian (probabilistic PCA) model.

Every closed form is compared with an independent computation: torch.distributions, Bayes'
rule on a grid, or Monte Carlo sampling.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from vae_course import linear_gaussian as lg
from vae_course import gaussian

F64 = torch.float64


def random_q(n: int, k: int, seed: int, spread: float = 1.0):
    """A random Gaussian q per data point: means (n, k), full covariances (n, k, k)."""
    g = torch.Generator().manual_seed(seed)
    mean = spread * torch.randn(n, k, generator=g, dtype=F64)
    A = torch.randn(n, k, k, generator=g, dtype=F64)
    cov = A @ A.mT / k + 0.05 * torch.eye(k, dtype=F64)
    return mean, cov


@pytest.fixture(params=[(5, 2, 0.5, 0), (2, 1, 0.3, 1), (8, 3, 1.7, 2)], ids=["d5k2", "d2k1", "d8k3"])
def setup(request):
    data_dim, latent_dim, noise_var, seed = request.param
    model = lg.random_model(data_dim, latent_dim, noise_var=noise_var, seed=seed)
    x, _ = lg.sample(16, *model, seed=seed + 100)
    return model, x


# ----------------------------------------------------------------------------------------
# the model


def test_random_model_is_seeded():
    a, b = lg.random_model(5, 2, seed=3), lg.random_model(5, 2, seed=3)
    assert torch.equal(a.W, b.W) and torch.equal(a.b, b.b) and a.noise_var == b.noise_var
    c = lg.random_model(5, 2, seed=4)
    assert not torch.equal(a.W, c.W)
    assert a.W.dtype == F64 and a.W.shape == (5, 2) and a.b.shape == (5,) and (a.data_dim, a.latent_dim) == (5, 2)
    named = lg.random_model(data_dim=4, latent_dim=3, noise_var=0.2, seed=3)   # the notation table's D, J, s^2
    assert named.W.shape == (4, 3) and (named.data_dim, named.latent_dim, named.noise_var) == (4, 3, 0.2)


def test_sample_has_the_marginal_moments():
    model = lg.random_model(3, 2, noise_var=0.4, seed=0)
    x, z = lg.sample(200_000, *model, seed=1)
    assert x.shape == (200_000, 3) and z.shape == (200_000, 2) and x.dtype == F64
    assert torch.allclose(x.mean(0), model.b, atol=0.02)
    assert torch.allclose(torch.cov(x.T), lg.marginal_covariance(*model), atol=0.05)
    assert torch.allclose(torch.cov(z.T), torch.eye(2, dtype=F64), atol=0.02)


def test_log_marginal_matches_torch_multivariate_normal(setup):
    model, x = setup
    expected = MultivariateNormal(model.b, model.W @ model.W.T + model.noise_var * torch.eye(model.data_dim, dtype=F64)).log_prob(x)
    got = lg.log_marginal(x, *model)
    assert got.shape == (x.shape[0],) and got.dtype == F64
    assert torch.allclose(got, expected, rtol=0, atol=1e-10)


def test_log_marginal_is_the_integral_of_the_joint():
    """p(x) = ∫ p(x|z) p(z) dz, by quadrature on a fine grid (k = 1)."""
    model = lg.random_model(2, 1, noise_var=0.3, seed=1)
    x, _ = lg.sample(5, *model, seed=2)
    z = torch.linspace(-12, 12, 24_001, dtype=F64)
    log_joint = lg.log_joint(x, z.reshape(-1, 1, 1).expand(-1, 5, 1), *model)  # (G, N)
    quadrature = torch.logsumexp(log_joint, 0) + math.log(float(z[1] - z[0]))
    assert torch.allclose(quadrature, lg.log_marginal(x, *model), atol=1e-8)


def test_log_likelihood_and_prior_match_torch():
    model = lg.random_model(4, 2, noise_var=0.7, seed=5)
    x, z = lg.sample(6, *model, seed=6)
    expected = MultivariateNormal(z @ model.W.T + model.b, model.noise_var * torch.eye(4, dtype=F64)).log_prob(x)
    assert torch.allclose(lg.log_likelihood(x, z, *model), expected, atol=1e-12)
    prior = MultivariateNormal(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    assert torch.allclose(lg.log_prior(z), prior.log_prob(z), atol=1e-12)
    zs = torch.randn(3, 6, 2, dtype=F64)  # leading sample dimension broadcasts
    assert lg.log_joint(x, zs, *model).shape == (3, 6)
    shared = torch.randn(3, 1, 2, dtype=F64)  # the same latents scored against every data point
    got = lg.log_likelihood(x, shared, *model)
    assert got.shape == (3, 6)
    assert torch.allclose(got, lg.log_likelihood(x, shared.expand(3, 6, 2), *model), atol=1e-12)


def test_covariance_from_unconstrained_is_positive_definite_and_differentiable():
    raw = torch.randn(4, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(0)).mul(3).requires_grad_(True)
    cov = lg.covariance_from_unconstrained(raw)
    assert cov.shape == (4, 3, 3)
    assert torch.allclose(cov, cov.mT) and (torch.linalg.eigvalsh(cov) > 0).all()
    L = torch.linalg.cholesky(cov)
    assert torch.allclose(L.diagonal(dim1=-2, dim2=-1), raw.detach().diagonal(dim1=-2, dim2=-1).exp())
    assert torch.allclose(torch.tril(L, -1), torch.tril(raw.detach(), -1))
    cov.sum().backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert torch.equal(lg.covariance_from_unconstrained(torch.zeros(2, 2, dtype=F64)), torch.eye(2, dtype=F64))


# ----------------------------------------------------------------------------------------
# the posterior


@pytest.mark.parametrize("k", [1, 2])
def test_posterior_matches_bayes_on_a_grid(k):
    """p(z|x) ∝ p(x|z) p(z), normalised numerically on a grid; compare its mean and covariance."""
    model = lg.random_model(3, k, noise_var=0.5, seed=10 + k)
    x, _ = lg.sample(3, *model, seed=3)
    mean, cov = lg.posterior(x, *model)
    assert mean.shape == (3, k) and cov.shape == (k, k)
    axis = torch.linspace(-6, 6, 1201 if k == 1 else 401, dtype=F64)
    grid = axis.reshape(-1, 1) if k == 1 else torch.cartesian_prod(axis, axis)  # (G, k)
    for i in range(3):
        log_w = lg.log_joint(x[i:i + 1], grid.unsqueeze(1), *model).squeeze(1)  # (G,)
        w = torch.softmax(log_w, 0)
        grid_mean = (w.unsqueeze(1) * grid).sum(0)
        centred = grid - grid_mean
        grid_cov = (w.reshape(-1, 1, 1) * centred.unsqueeze(2) * centred.unsqueeze(1)).sum(0)
        assert torch.allclose(grid_mean, mean[i], atol=1e-6), (grid_mean, mean[i])
        assert torch.allclose(grid_cov, cov, atol=1e-6), (grid_cov, cov)


def test_posterior_makes_the_importance_weight_constant(setup):
    """Bayes: p(x, z) / p(z|x) = p(x) for every z, so with q = posterior every sample gives log p(x)."""
    model, x = setup
    mean, cov = lg.posterior(x, *model)
    z = MultivariateNormal(mean, cov).sample((7,))  # (7, N, k)
    log_w = lg.log_joint(x, z, *model) - MultivariateNormal(mean, cov).log_prob(z)
    assert torch.allclose(log_w, lg.log_marginal(x, *model).expand(7, -1), atol=1e-9)


# ----------------------------------------------------------------------------------------
# the ELBO (its KL divergences are gaussian.kl_mvn's: tests/test_gaussian.py)


@pytest.mark.parametrize("form", ["full", "shared", "diagonal"])
def test_elbo_is_below_log_marginal_and_the_gap_is_the_kl_to_the_posterior(setup, form):
    model, x = setup
    n, k = x.shape[0], model.latent_dim
    log_px = lg.log_marginal(x, *model)
    post_mean, post_cov = lg.posterior(x, *model)
    for seed in range(5):
        q_mean, q_cov = random_q(n, k, seed=seed, spread=2.0)
        q_mean = q_mean + post_mean * (seed % 2)  # some q near the posterior, some far
        if form == "shared":
            q_cov = q_cov[0]
        if form == "diagonal":
            q_logvar = torch.randn(n, k, dtype=F64, generator=torch.Generator().manual_seed(seed))
            q_cov = torch.diag_embed(q_logvar.exp())
            value = lg.elbo(x, *model, q_mean, q_logvar=q_logvar)
        else:
            value = lg.elbo(x, *model, q_mean, q_cov)
        assert value.shape == (n,)
        assert (value <= log_px + 1e-10).all()
        gap = log_px - value
        kl = gaussian.kl_mvn(q_mean, q_cov, post_mean, post_cov)
        assert torch.allclose(gap, kl, rtol=0, atol=1e-8), (gap - kl).abs().max()


def test_elbo_is_tight_at_the_exact_posterior(setup):
    model, x = setup
    mean, cov = lg.posterior(x, *model)
    parts = lg.elbo_parts(x, *model, mean, cov)
    assert torch.allclose(parts.elbo, lg.log_marginal(x, *model), rtol=0, atol=1e-9)
    assert torch.allclose(parts.elbo, parts.expected_log_likelihood - parts.kl, atol=1e-12)
    assert (parts.kl > 0).all()


def test_posterior_mean_is_a_stationary_point_of_the_elbo(setup):
    model, x = setup
    mean, cov = lg.posterior(x, *model)
    q_mean = mean.clone().requires_grad_(True)
    lg.elbo(x, *model, q_mean, cov).sum().backward()
    assert q_mean.grad.abs().max() < 1e-9


def test_diagonal_q_matches_full_form_and_the_vae_kl():
    model = lg.random_model(5, 2, seed=0)
    x, _ = lg.sample(10, *model, seed=1)
    g = torch.Generator().manual_seed(2)
    q_mean, q_logvar = torch.randn(10, 2, generator=g, dtype=F64), torch.randn(10, 2, generator=g, dtype=F64)
    diag = lg.elbo_parts(x, *model, q_mean, q_logvar=q_logvar)
    full = lg.elbo_parts(x, *model, q_mean, torch.diag_embed(q_logvar.exp()))
    for a, b in zip(diag, full):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(diag.kl, gaussian.kl(q_mean, q_logvar), atol=1e-12)


@pytest.mark.parametrize("form", ["full", "diagonal"])
def test_monte_carlo_elbo_agrees_with_the_closed_form(form):
    model = lg.random_model(5, 2, noise_var=0.5, seed=0)
    x, _ = lg.sample(4, *model, seed=1)
    q_mean, q_cov = random_q(4, 2, seed=3)
    q_logvar = torch.log(torch.diagonal(q_cov, dim1=-2, dim2=-1))
    kwargs = {"q_cov": q_cov} if form == "full" else {"q_logvar": q_logvar}
    exact = lg.elbo(x, *model, q_mean, **kwargs)
    estimate, stderr = lg.elbo_monte_carlo(x, *model, q_mean, n_samples=20_000, seed=7, **kwargs)
    assert estimate.shape == stderr.shape == (4,)
    assert (stderr > 0).all() and (stderr < 0.5).all(), stderr
    z = (estimate - exact) / stderr
    assert (z.abs() < 4.5).all(), z


def test_elbo_is_differentiable_in_the_model_and_q():
    model = lg.random_model(4, 2, seed=0)
    x, _ = lg.sample(3, *model, seed=1)
    W = model.W.clone().requires_grad_(True)
    noise_var = torch.tensor(0.5, dtype=F64, requires_grad=True)
    q_logvar = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    lg.elbo(x, W, model.b, noise_var, torch.zeros(3, 2, dtype=F64), q_logvar=q_logvar).sum().backward()
    for t in (W, noise_var, q_logvar):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_float32_inputs_are_computed_in_float64():
    model = lg.random_model(3, 1, seed=0)
    x, _ = lg.sample(2, *model)
    got = lg.log_marginal(x.float(), model.W.float(), model.b.float(), model.noise_var)
    assert got.dtype == F64
    assert torch.allclose(got, lg.log_marginal(x, *model), atol=1e-5)


# ----------------------------------------------------------------------------------------
# bad inputs name the argument


def _bad_calls():
    model = lg.random_model(3, 2, seed=0)
    W, b, s2 = model
    x, _ = lg.sample(4, *model)
    m, S = torch.zeros(4, 2, dtype=F64), torch.eye(2, dtype=F64)
    not_pd = torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)
    asym = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64)
    return [
        ("x", lambda: lg.log_marginal(x[:, :2], W, b, s2)),
        ("x", lambda: lg.log_marginal(x.long(), W, b, s2)),
        ("x", lambda: lg.posterior([[0.0, 0.0, 0.0]], W, b, s2)),
        ("x", lambda: lg.log_marginal(torch.full((1, 3), float("nan"), dtype=F64), W, b, s2)),
        ("W", lambda: lg.log_marginal(x, W[0], b, s2)),
        ("b", lambda: lg.posterior(x, W, b[:2], s2)),
        ("noise_var", lambda: lg.log_marginal(x, W, b, 0.0)),
        ("noise_var", lambda: lg.log_marginal(x, W, b, -1.0)),
        ("noise_var", lambda: lg.log_marginal(x, W, b, float("inf"))),
        ("noise_var", lambda: lg.log_marginal(x, W, b, "0.5")),
        ("noise_var", lambda: lg.log_marginal(x, W, b, torch.ones(2, dtype=F64))),
        ("q_mean", lambda: lg.elbo(x, W, b, s2, m[:3], S)),
        ("q_cov", lambda: lg.elbo(x, W, b, s2, m, torch.eye(3, dtype=F64))),
        ("q_cov", lambda: lg.elbo(x, W, b, s2, m, not_pd)),
        ("q_cov", lambda: lg.elbo(x, W, b, s2, m, asym)),
        ("q_cov, q_logvar", lambda: lg.elbo(x, W, b, s2, m)),
        ("q_cov, q_logvar", lambda: lg.elbo(x, W, b, s2, m, S, q_logvar=m)),
        ("q_logvar", lambda: lg.elbo(x, W, b, s2, m, q_logvar=m[:, :1])),
        ("n_samples", lambda: lg.elbo_monte_carlo(x, W, b, s2, m, S, n_samples=0)),
        ("z", lambda: lg.log_likelihood(x, torch.zeros(4, 3, dtype=F64), W, b, s2)),
        ("data_dim", lambda: lg.random_model(0, 2)),
        ("latent_dim", lambda: lg.random_model(3, 2.5)),
        ("seed", lambda: lg.random_model(3, 2, seed="zero")),
        ("n", lambda: lg.sample(0, W, b, s2)),
        ("raw", lambda: lg.covariance_from_unconstrained(torch.zeros(2, 3, dtype=F64))),
        ("z", lambda: lg.log_likelihood(x, torch.zeros(2, 2, dtype=F64), W, b, s2)),
    ]


@pytest.mark.parametrize("name, call", _bad_calls(), ids=[f"{i}-{n}" for i, (n, _) in enumerate(_bad_calls())])
def test_bad_inputs_raise_with_the_argument_name(name, call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).startswith(name + ":") or f"{name}:" in str(info.value), str(info.value)


# ----------------------------------------------------------------------------------------
# the figure helper added for this model (plots.gaussian_contours)


def test_gaussian_contours_draws_every_gaussian():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vae_course import plots

    model = lg.random_model(5, 2, seed=0)
    x, _ = lg.sample(1, *model)
    mean, cov = lg.posterior(x, *model)
    fig = plots.gaussian_contours({"posterior": (mean[0], cov), "prior": (torch.zeros(2), torch.eye(2))},
                                  title="t", levels=(1.0, 2.0))
    ax = fig.axes[0]
    assert ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["posterior", "prior"]
    assert len(ax.lines) == 2 * 3  # two ellipses and a mean marker each
    ellipse = ax.lines[0].get_xydata() - mean[0].numpy()  # Mahalanobis distance 1 everywhere on it
    maha = (ellipse @ torch.linalg.inv(cov).numpy() * ellipse).sum(1)
    assert abs(maha - 1.0).max() < 1e-9
    with pytest.raises(ValueError, match="gaussians"):
        plots.gaussian_contours({"bad": (torch.zeros(2), -torch.eye(2))})
    plt.close("all")
