"""A linear-Gaussian latent variable model, where everything a VAE approximates is exact.

Probabilistic PCA (Tipping & Bishop 1999; Bishop 2006, Sec. 12.2)::

    z ~ N(0, I_k)                      the prior p(z)              (Bishop eq. 12.31)
    x | z ~ N(W z + b, sigma2 I_d)     the decoder p(x|z)          (Bishop eq. 12.32)

with ``W`` of shape ``(d, k)``, ``b`` of shape ``(d,)`` and a noise variance ``sigma2 > 0``. Here
the marginal likelihood p(x), the posterior p(z|x) and the ELBO of any Gaussian q(z|x) all have
closed forms, so the ELBO identity

    log p(x) - KL(q(z|x) || p(z|x)) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

(Kingma & Welling 2014, eqs. 1-3) can be checked to machine precision.

Conventions: every function computes in float64 (inputs are converted, autograd flows through
the conversion), returns log-densities and divergences in nats, and raises ``TypeError`` /
``ValueError`` with the name of the offending argument. Shapes: data ``x (N, d)``, latents
``z (..., N, k)``, q's mean ``(N, k)``, covariances ``(k, k)`` (shared) or ``(N, k, k)``,
diagonal log-variances ``(N, k)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from vae_course import validate
from vae_course.estimators import kl_mvn

DTYPE = torch.float64


class LinearGaussian(NamedTuple):
    """The model's parameters; ``log_marginal(x, *model)`` unpacks them as ``W, b, sigma2``."""

    W: Tensor  # (d, k) decoder weights
    b: Tensor  # (d,) decoder offset (the data mean)
    sigma2: float  # decoder noise variance

    @property
    def d(self) -> int:
        """Data dimension."""
        return self.W.shape[0]

    @property
    def k(self) -> int:
        """Latent dimension."""
        return self.W.shape[1]


class ElboParts(NamedTuple):
    """The ELBO and its two terms, each ``(N,)`` in nats: ``elbo = expected_log_likelihood - kl``."""

    elbo: Tensor
    expected_log_likelihood: Tensor
    kl: Tensor


# ----------------------------------------------------------------------------------------
# argument checks


def _matrix(value, name: str) -> Tensor:
    validate.floating(value, name)
    validate.finite(value, name)
    return value.to(DTYPE)


def _check_model(W, b, sigma2) -> tuple[Tensor, Tensor, Tensor]:
    W = _matrix(W, "W")
    if W.dim() != 2 or 0 in W.shape:
        raise ValueError(f"W: expected shape (d, k) with d, k >= 1, got {tuple(W.shape)}")
    b = _matrix(b, "b")
    if tuple(b.shape) != (W.shape[0],):
        raise ValueError(f"b: expected shape ({W.shape[0]},) (d = W.shape[0]), got {tuple(b.shape)}")
    if isinstance(sigma2, Tensor):
        validate.floating(sigma2, "sigma2")
        if sigma2.numel() != 1:
            raise ValueError(f"sigma2: expected a single number, got a tensor of shape {tuple(sigma2.shape)}")
        bad = not bool(torch.isfinite(sigma2).all()) or float(sigma2.detach()) <= 0
        s2 = sigma2.to(DTYPE).reshape(())
    else:
        bad = isinstance(sigma2, bool) or not isinstance(sigma2, (int, float)) or not (0 < sigma2 < math.inf)
        s2 = None if bad else torch.tensor(float(sigma2), dtype=DTYPE, device=W.device)
    if bad:
        raise ValueError(f"sigma2: expected a finite number > 0 (the decoder's noise variance), got {sigma2!r}")
    return W, b, s2


def _check_rows(value, name: str, n: int | None, width: int, what: str) -> Tensor:
    value = _matrix(value, name)
    if value.dim() != 2 or value.shape[1] != width or (n is not None and value.shape[0] != n):
        rows = "N" if n is None else str(n)
        raise ValueError(f"{name}: expected shape ({rows}, {width}) ({what}), got {tuple(value.shape)}")
    return value


def _check_cov(value, name: str, n: int, k: int) -> Tensor:
    value = _matrix(value, name)
    if value.shape not in (torch.Size([k, k]), torch.Size([n, k, k])):
        raise ValueError(f"{name}: expected shape ({k}, {k}) or ({n}, {k}, {k}), got {tuple(value.shape)}")
    scale = float(value.detach().abs().max()) if value.numel() else 0.0
    if not torch.allclose(value, value.mT, rtol=0.0, atol=1e-9 * max(scale, 1e-300)):
        raise ValueError(f"{name}: expected a symmetric matrix")
    if bool((torch.linalg.cholesky_ex(value).info != 0).any()):
        raise ValueError(f"{name}: expected a positive-definite covariance (its Cholesky factorisation failed)")
    return value


def _check_gaussian(mean, cov, name_mean: str, name_cov: str) -> tuple[Tensor, Tensor]:
    mean = _matrix(mean, name_mean)
    if mean.dim() < 1 or mean.shape[-1] == 0:
        raise ValueError(f"{name_mean}: expected shape (..., k) with k >= 1, got {tuple(mean.shape)}")
    k = mean.shape[-1]
    cov = _matrix(cov, name_cov)
    if cov.dim() < 2 or cov.shape[-2:] != (k, k):
        raise ValueError(f"{name_cov}: expected shape (..., {k}, {k}) to match {name_mean}, got {tuple(cov.shape)}")
    if bool((torch.linalg.cholesky_ex(cov).info != 0).any()):
        raise ValueError(f"{name_cov}: expected a positive-definite covariance (its Cholesky factorisation failed)")
    return mean, cov


def _check_int(value, name: str) -> int:
    return validate.positive_int(value, name)


# ----------------------------------------------------------------------------------------
# the model


def random_model(d: int = 5, k: int = 2, sigma2: float = 0.5, seed: int = 0) -> LinearGaussian:
    """A random model with a fixed seed: ``W`` entries N(0, 1), ``b`` entries N(0, 0.5^2).

    Returns:
        ``LinearGaussian(W (d, k), b (d,), sigma2)`` in float64; the same seed gives the same model.
    """
    _check_int(d, "d")
    _check_int(k, "k")
    _check_model(torch.zeros(d, k), torch.zeros(d), sigma2)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d, k, generator=g, dtype=DTYPE)
    b = 0.5 * torch.randn(d, generator=g, dtype=DTYPE)
    return LinearGaussian(W, b, float(sigma2))


def sample(n: int, W: Tensor, b: Tensor, sigma2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Draw ``n`` pairs from the generative process: z ~ N(0, I), then x ~ N(W z + b, sigma2 I).

    Returns:
        ``(x (n, d), z (n, k))`` in float64.
    """
    _check_int(n, "n")
    W, b, s2 = _check_model(W, b, sigma2)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=DTYPE).to(W.device)
    noise = torch.randn(n, W.shape[0], generator=g, dtype=DTYPE).to(W.device)
    return z @ W.T + b + s2.sqrt() * noise, z


def log_prior(z: Tensor) -> Tensor:
    """log N(z; 0, I) in nats: ``(..., k) -> (...)``."""
    z = _matrix(z, "z")
    if z.dim() < 1 or z.shape[-1] == 0:
        raise ValueError(f"z: expected shape (..., k) with k >= 1, got {tuple(z.shape)}")
    return -0.5 * (z.shape[-1] * math.log(2 * math.pi) + z.pow(2).sum(-1))


def log_likelihood(x: Tensor, z: Tensor, W: Tensor, b: Tensor, sigma2) -> Tensor:
    """The decoder's log-density log N(x; W z + b, sigma2 I) in nats (Bishop eq. 12.32).

    Args:
        x: ``(N, d)`` data.
        z: ``(..., N, k)`` latents; leading dimensions (e.g. S samples per example) broadcast, and
            ``(..., 1, k)`` scores the same latents against every data point.

    Returns:
        ``(..., N)`` nats.
    """
    W, b, s2 = _check_model(W, b, sigma2)
    d, k = W.shape
    x = _check_rows(x, "x", None, d, "N data points of dimension d = W.shape[0]")
    z = _matrix(z, "z")
    if z.dim() < 2 or z.shape[-1] != k or z.shape[-2] not in (1, x.shape[0]):
        raise ValueError(f"z: expected shape (..., {x.shape[0]}, {k}) or (..., 1, {k}) (N = x.shape[0], "
                         f"k = W.shape[1]), got {tuple(z.shape)}")
    residual = x - (z @ W.T + b)
    return -0.5 * (d * torch.log(2 * math.pi * s2) + residual.pow(2).sum(-1) / s2)


def log_joint(x: Tensor, z: Tensor, W: Tensor, b: Tensor, sigma2) -> Tensor:
    """log p(x, z) = log p(x|z) + log p(z), nats; shapes as ``log_likelihood``."""
    return log_likelihood(x, z, W, b, sigma2) + log_prior(z)


def marginal_covariance(W: Tensor, b: Tensor, sigma2) -> Tensor:
    """C = W W^T + sigma2 I, the ``(d, d)`` covariance of p(x) (Bishop eq. 12.36)."""
    W, b, s2 = _check_model(W, b, sigma2)
    return W @ W.T + s2 * torch.eye(W.shape[0], dtype=DTYPE, device=W.device)


def log_marginal(x: Tensor, W: Tensor, b: Tensor, sigma2) -> Tensor:
    """The exact log-evidence log p(x) = log ∫ p(x|z) p(z) dz, in nats.

    Integrating the linear-Gaussian decoder against the prior gives x ~ N(b, W W^T + sigma2 I)
    (Tipping & Bishop 1999, Sec. 3; Bishop 2006, eqs. 12.35-12.36).

    Args:
        x: ``(N, d)`` data. W ``(d, k)``, b ``(d,)``, sigma2 > 0: the model.

    Returns:
        ``(N,)`` nats.
    """
    W, b, s2 = _check_model(W, b, sigma2)
    d = W.shape[0]
    x = _check_rows(x, "x", None, d, "N data points of dimension d = W.shape[0]")
    L = torch.linalg.cholesky(marginal_covariance(W, b, s2))
    y = torch.linalg.solve_triangular(L, (x - b).T, upper=False)  # (d, N): L^{-1} (x - b)
    log_det = 2.0 * torch.log(torch.diagonal(L)).sum()
    return -0.5 * (d * math.log(2 * math.pi) + log_det + y.pow(2).sum(0))


def posterior(x: Tensor, W: Tensor, b: Tensor, sigma2) -> tuple[Tensor, Tensor]:
    """The exact posterior p(z|x) = N(mean, cov) by Bayes' rule (Bishop 2006, eqs. 12.41-12.42):

        M = W^T W + sigma2 I_k,   mean = M^{-1} W^T (x - b),   cov = sigma2 M^{-1}.

    The covariance does not depend on x: one ``(k, k)`` matrix serves every data point.

    Args:
        x: ``(N, d)`` data. W ``(d, k)``, b ``(d,)``, sigma2 > 0: the model.

    Returns:
        ``(mean (N, k), cov (k, k))`` in float64.
    """
    W, b, s2 = _check_model(W, b, sigma2)
    d, k = W.shape
    x = _check_rows(x, "x", None, d, "N data points of dimension d = W.shape[0]")
    M = W.T @ W + s2 * torch.eye(k, dtype=DTYPE, device=W.device)
    L = torch.linalg.cholesky(M)
    mean = torch.cholesky_solve(W.T @ (x - b).T, L).T  # (N, k)
    cov = s2 * torch.cholesky_inverse(L)
    return mean, 0.5 * (cov + cov.T)


def covariance_from_unconstrained(raw: Tensor) -> Tensor:
    """Any real ``(..., k, k)`` tensor -> a positive-definite covariance ``L L^T``, where ``L`` takes
    ``raw``'s strictly lower triangle and ``exp`` of its diagonal (so gradient steps on ``raw`` can
    never leave the positive-definite cone). ``raw = 0`` gives the identity."""
    raw = _matrix(raw, "raw")
    if raw.dim() < 2 or raw.shape[-1] != raw.shape[-2] or raw.shape[-1] == 0:
        raise ValueError(f"raw: expected shape (..., k, k) with k >= 1, got {tuple(raw.shape)}")
    L = torch.tril(raw, -1) + torch.diag_embed(torch.diagonal(raw, dim1=-2, dim2=-1).exp())
    return L @ L.mT


# ----------------------------------------------------------------------------------------
# KL divergences and the ELBO


def kl_gaussians_full(m1: Tensor, S1: Tensor, m2: Tensor, S2: Tensor) -> Tensor:
    """KL( N(m1, S1) || N(m2, S2) ) for full covariances, in nats (e.g. Bishop 2006, ex. 2.13):

        1/2 [ tr(S2^{-1} S1) + (m2 - m1)^T S2^{-1} (m2 - m1) - k + ln det S2 - ln det S1 ].

    Args:
        m1, m2: ``(..., k)`` means. S1, S2: ``(..., k, k)`` positive-definite covariances. Leading
            dimensions broadcast.

    Returns:
        ``(...)`` nats, >= 0 (0 only when the two Gaussians are equal).
    """
    m1, S1 = _check_gaussian(m1, S1, "m1", "S1")
    m2, S2 = _check_gaussian(m2, S2, "m2", "S2")
    if m2.shape[-1] != m1.shape[-1]:
        raise ValueError(f"m2: expected last dimension k = {m1.shape[-1]} to match m1, got {tuple(m2.shape)}")
    # One implementation of the formula in the package: notebook 03 derives and tests it.
    return kl_mvn(m1, S1, m2, S2)


def _q_moments(x, W, q_mean, q_cov, q_logvar):
    """Check q's parameters; return (mean (N, k), cov (k, k) | (N, k, k) | None, logvar | None)."""
    n, k = x.shape[0], W.shape[1]
    if (q_cov is None) == (q_logvar is None):
        raise ValueError("q_cov, q_logvar: give exactly one (a full covariance, or a diagonal log-variance)")
    q_mean = _check_rows(q_mean, "q_mean", n, k, "one k-dimensional mean per data point")
    if q_cov is not None:
        return q_mean, _check_cov(q_cov, "q_cov", n, k), None
    return q_mean, None, _check_rows(q_logvar, "q_logvar", n, k, "one diagonal log-variance per data point")


def elbo_parts(x: Tensor, W: Tensor, b: Tensor, sigma2, q_mean: Tensor, q_cov: Tensor | None = None,
               *, q_logvar: Tensor | None = None) -> ElboParts:
    """The ELBO of a Gaussian q(z|x) = N(q_mean, S) in closed form, with its two terms.

    Expected log-likelihood (the Gaussian decoder averaged over q; E[(z-m)(z-m)^T] = S):

        E_q[log p(x|z)] = -d/2 ln(2 pi sigma2) - ( ||x - W m - b||^2 + tr(W S W^T) ) / (2 sigma2)

    KL to the prior N(0, I) (Kingma & Welling 2014, App. B, in full-covariance form):

        KL(q || p(z)) = 1/2 [ tr S + m^T m - k - ln det S ].

    Args:
        x: ``(N, d)``. W, b, sigma2: the model. q_mean: ``(N, k)``.
        q_cov: ``(k, k)`` or ``(N, k, k)`` full covariance of q, or
        q_logvar: ``(N, k)`` log-variances of a diagonal q (what a VAE's encoder outputs).

    Returns:
        ``ElboParts(elbo, expected_log_likelihood, kl)``, each ``(N,)`` nats.
    """
    W, b, s2 = _check_model(W, b, sigma2)
    d, k = W.shape
    x = _check_rows(x, "x", None, d, "N data points of dimension d = W.shape[0]")
    m, S, logvar = _q_moments(x, W, q_mean, q_cov, q_logvar)
    residual = x - m @ W.T - b
    WtW = W.T @ W
    if S is not None:
        trace_wsw = (WtW * S).sum((-2, -1))  # tr(W S W^T) = sum_ij (W^T W)_ij S_ij (S symmetric)
        kl = 0.5 * (torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) + m.pow(2).sum(-1) - k - torch.logdet(S))
    else:
        var = logvar.exp()
        trace_wsw = (torch.diagonal(WtW) * var).sum(-1)
        kl = 0.5 * (var + m.pow(2) - 1.0 - logvar).sum(-1)
    expected = -0.5 * d * torch.log(2 * math.pi * s2) - (residual.pow(2).sum(-1) + trace_wsw) / (2 * s2)
    return ElboParts(expected - kl, expected, kl.expand_as(expected))


def elbo(x: Tensor, W: Tensor, b: Tensor, sigma2, q_mean: Tensor, q_cov: Tensor | None = None,
         *, q_logvar: Tensor | None = None) -> Tensor:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), closed form, ``(N,)`` nats; <= ``log_marginal``.

    Arguments as ``elbo_parts`` (give ``q_cov`` or ``q_logvar``).
    """
    return elbo_parts(x, W, b, sigma2, q_mean, q_cov, q_logvar=q_logvar).elbo


def elbo_monte_carlo(x: Tensor, W: Tensor, b: Tensor, sigma2, q_mean: Tensor, q_cov: Tensor | None = None,
                     *, q_logvar: Tensor | None = None, n_samples: int = 1000,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """The ELBO estimated by sampling, as a VAE does: the mean of log p(x, z) - log q(z|x) over
    ``n_samples`` reparameterized draws z = m + L eps (L L^T = S, eps ~ N(0, I); Kingma & Welling
    2014, Sec. 2.4 and eq. 6). Uses its own generator (``seed``); the global RNG is untouched.

    Returns:
        ``(estimate (N,), stderr (N,))`` nats: the sample mean and its standard error.
    """
    W, b, s2 = _check_model(W, b, sigma2)
    _check_int(n_samples, "n_samples")
    x = _check_rows(x, "x", None, W.shape[0], "N data points of dimension d = W.shape[0]")
    m, S, logvar = _q_moments(x, W, q_mean, q_cov, q_logvar)
    n, k = m.shape
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_samples, n, k, generator=g, dtype=DTYPE).to(m.device)
    if S is None:
        S = torch.diag_embed(logvar.exp())
    L = torch.linalg.cholesky(S).expand(n, k, k)
    z = m + (L @ eps.unsqueeze(-1)).squeeze(-1)  # (S, N, k)
    log_q = torch.distributions.MultivariateNormal(m, scale_tril=L).log_prob(z)
    values = log_joint(x, z, W, b, s2) - log_q
    stderr = values.std(0) / math.sqrt(n_samples) if n_samples > 1 else torch.full_like(values[0], math.nan)
    return values.mean(0), stderr
