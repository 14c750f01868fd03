"""A linear-Gaussian latent variable model, where everything a VAE approximates is exact.

Probabilistic PCA (Tipping & Bishop 1999; Bishop 2006, Sec. 12.2)::

    z ~ N(0, I_J)                      the prior p(z)              (Bishop eq. 12.31)
    x | z ~ N(W z + b, s^2 I_D)        the decoder p(x|z)          (Bishop eq. 12.32)

with ``W`` of shape ``(D, J)``, ``b`` of shape ``(D,)`` and a noise variance ``noise_var`` = s^2 > 0
(D data dimensions, J latent dimensions, as in the course's notation table). Here
the marginal likelihood p(x), the posterior p(z|x) and the ELBO of any Gaussian q(z|x) all have
closed forms, so the ELBO identity

    log p(x) - KL(q(z|x) || p(z|x)) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

(Kingma & Welling 2014, eqs. 1-3) can be checked to machine precision.

The Gaussian formulas themselves (log-densities, the KL divergences, the covariance check) are
``vae_course.gaussian``'s. Conventions: every function computes in float64 (inputs are converted, autograd flows through
the conversion), returns log-densities and divergences in nats, and raises ``TypeError`` /
``ValueError`` with the name of the offending argument. Shapes: data ``x (N, D)``, latents
``z (..., N, J)``, q's mean ``(N, J)``, covariances ``(J, J)`` (shared) or ``(N, J, J)``,
diagonal log-variances ``(N, J)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from vae_course import gaussian, stats, validate

DTYPE = torch.float64


class LinearGaussian(NamedTuple):
    """The model's parameters; ``log_marginal(x, *model)`` unpacks them as ``W, b, noise_var``."""

    W: Tensor  # (D, J) decoder weights
    b: Tensor  # (D,) decoder offset (the data mean)
    noise_var: float  # decoder noise variance s^2

    @property
    def data_dim(self) -> int:
        """Data dimension D."""
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        """Latent dimension J."""
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


def _check_model(W, b, noise_var) -> tuple[Tensor, Tensor, Tensor]:
    W = _matrix(W, "W")
    if W.dim() != 2 or 0 in W.shape:
        raise ValueError(f"W: expected shape (D, J) with D, J >= 1, got {tuple(W.shape)}")
    b = _matrix(b, "b")
    if tuple(b.shape) != (W.shape[0],):
        raise ValueError(f"b: expected shape ({W.shape[0]},) (D = W.shape[0]), got {tuple(b.shape)}")
    if isinstance(noise_var, Tensor):
        validate.floating(noise_var, "noise_var")
        if noise_var.dim() != 0:
            raise ValueError(f"noise_var: expected a single number (a 0-d tensor), got a Tensor of shape {tuple(noise_var.shape)}")
        bad = not bool(torch.isfinite(noise_var).all()) or float(noise_var.detach()) <= 0
        s2 = noise_var.to(DTYPE).reshape(())
    else:  # a number (NumPy scalars too): refused naming noise_var, the expected and the received value
        s2 = torch.tensor(validate.positive_float(noise_var, "noise_var"), dtype=DTYPE, device=W.device)
        bad = False
    if bad:
        raise ValueError(f"noise_var: expected a finite number > 0 (the decoder's noise variance s^2), "
                         f"got {type(noise_var).__name__} {noise_var!r}")
    return W, b, s2


def _check_rows(value, name: str, n: int | None, width: int, what: str) -> Tensor:
    value = _matrix(value, name)
    if value.dim() != 2 or value.shape[1] != width or (n is not None and value.shape[0] != n):
        rows = "N" if n is None else str(n)
        raise ValueError(f"{name}: expected shape ({rows}, {width}) ({what}), got {tuple(value.shape)}")
    return value


def _check_cov(value, name: str, n: int, J: int) -> Tensor:
    value = _matrix(value, name)
    if value.shape not in (torch.Size([J, J]), torch.Size([n, J, J])):
        raise ValueError(f"{name}: expected shape ({J}, {J}) or ({n}, {J}, {J}), got {tuple(value.shape)}")
    gaussian.check_covariance(value, name, J)  # symmetric and positive definite
    return value


def _check_int(value, name: str) -> int:
    return validate.positive_int(value, name)


# ----------------------------------------------------------------------------------------
# the model


def random_model(data_dim: int = 5, latent_dim: int = 2, noise_var: float = 0.5, seed: int = 0) -> LinearGaussian:
    """A random model with a fixed seed: ``W`` entries N(0, 1), ``b`` entries N(0, 0.5^2).

    Args:
        data_dim: D, the data dimension. latent_dim: J, the latent dimension.
        noise_var: s^2 > 0, the decoder's noise variance. seed: the generator's seed.

    Returns:
        ``LinearGaussian(W (D, J), b (D,), noise_var)`` in float64; the same seed gives the same model.
    """
    _check_int(data_dim, "data_dim")
    _check_int(latent_dim, "latent_dim")
    _, _, s2 = _check_model(torch.zeros(data_dim, latent_dim), torch.zeros(data_dim), noise_var)
    g = torch.Generator().manual_seed(validate.seed(seed))
    W = torch.randn(data_dim, latent_dim, generator=g, dtype=DTYPE)
    b = 0.5 * torch.randn(data_dim, generator=g, dtype=DTYPE)
    return LinearGaussian(W, b, float(s2))


def sample(n: int, W: Tensor, b: Tensor, noise_var, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Draw ``n`` pairs from the generative process: z ~ N(0, I), then x ~ N(W z + b, s^2 I) with s^2 = ``noise_var``.

    Returns:
        ``(x (n, D), z (n, J))`` in float64.
    """
    _check_int(n, "n")
    W, b, s2 = _check_model(W, b, noise_var)
    g = torch.Generator().manual_seed(validate.seed(seed))
    z = torch.randn(n, W.shape[1], generator=g, dtype=DTYPE).to(W.device)
    noise = torch.randn(n, W.shape[0], generator=g, dtype=DTYPE).to(W.device)
    return z @ W.T + b + s2.sqrt() * noise, z


def log_prior(z: Tensor) -> Tensor:
    """log N(z; 0, I) in nats: ``(..., J) -> (...)``."""
    z = _matrix(z, "z")
    if z.dim() < 1 or z.shape[-1] == 0:
        raise ValueError(f"z: expected shape (..., J) with J >= 1, got {tuple(z.shape)}")
    return gaussian.log_prob(z)


def log_likelihood(x: Tensor, z: Tensor, W: Tensor, b: Tensor, noise_var) -> Tensor:
    """The decoder's log-density log N(x; W z + b, s^2 I) in nats (s^2 = ``noise_var``) (Bishop eq. 12.32):
    ``gaussian.log_prob``, which keeps ln s^2 within [-30, 30].

    Args:
        x: ``(N, D)`` data.
        z: ``(..., N, J)`` latents; leading dimensions (e.g. S samples per example) broadcast, and
            ``(..., 1, J)`` scores the same latents against every data point.

    Returns:
        ``(..., N)`` nats.
    """
    W, b, s2 = _check_model(W, b, noise_var)
    D, J = W.shape
    x = _check_rows(x, "x", None, D, "N data points of dimension D = W.shape[0]")
    z = _matrix(z, "z")
    if z.dim() < 2 or z.shape[-1] != J or z.shape[-2] not in (1, x.shape[0]):
        raise ValueError(f"z: expected shape (..., {x.shape[0]}, {J}) or (..., 1, {J}) (N = x.shape[0], "
                         f"J = W.shape[1]), got {tuple(z.shape)}")
    return gaussian.log_prob(x, z @ W.T + b, torch.log(s2))  # N(W z + b, s^2 I): log-variance ln s^2 in every pixel


def log_joint(x: Tensor, z: Tensor, W: Tensor, b: Tensor, noise_var) -> Tensor:
    """log p(x, z) = log p(x|z) + log p(z), nats; shapes as ``log_likelihood``."""
    return log_likelihood(x, z, W, b, noise_var) + log_prior(z)


def marginal_covariance(W: Tensor, b: Tensor, noise_var) -> Tensor:
    """C = W W^T + s^2 I, the ``(D, D)`` covariance of p(x) (Bishop eq. 12.36)."""
    W, b, s2 = _check_model(W, b, noise_var)
    return W @ W.T + s2 * torch.eye(W.shape[0], dtype=DTYPE, device=W.device)


def log_marginal(x: Tensor, W: Tensor, b: Tensor, noise_var) -> Tensor:
    """The exact log-evidence log p(x) = log ∫ p(x|z) p(z) dz, in nats.

    Integrating the linear-Gaussian decoder against the prior gives x ~ N(b, W W^T + s^2 I)
    (Tipping & Bishop 1999, Sec. 3; Bishop 2006, eqs. 12.35-12.36).

    Args:
        x: ``(N, D)`` data. W ``(D, J)``, b ``(D,)``, noise_var = s^2 > 0: the model.

    Returns:
        ``(N,)`` nats.
    """
    W, b, s2 = _check_model(W, b, noise_var)
    D = W.shape[0]
    x = _check_rows(x, "x", None, D, "N data points of dimension D = W.shape[0]")
    chol = torch.linalg.cholesky(marginal_covariance(W, b, s2))
    y = torch.linalg.solve_triangular(chol, (x - b).T, upper=False)  # (D, N): chol^{-1} (x - b)
    log_det = 2.0 * torch.log(torch.diagonal(chol)).sum()
    return -0.5 * (D * math.log(2 * math.pi) + log_det + y.pow(2).sum(0))


def posterior(x: Tensor, W: Tensor, b: Tensor, noise_var) -> tuple[Tensor, Tensor]:
    """The exact posterior p(z|x) = N(mean, cov) by Bayes' rule (Bishop 2006, eqs. 12.41-12.42):

        M = W^T W + s^2 I_J,   mean = M^{-1} W^T (x - b),   cov = s^2 M^{-1}.

    The covariance does not depend on x: one ``(J, J)`` matrix serves every data point.

    Args:
        x: ``(N, D)`` data. W ``(D, J)``, b ``(D,)``, noise_var = s^2 > 0: the model.

    Returns:
        ``(mean (N, J), cov (J, J))`` in float64.
    """
    W, b, s2 = _check_model(W, b, noise_var)
    D, J = W.shape
    x = _check_rows(x, "x", None, D, "N data points of dimension D = W.shape[0]")
    M = W.T @ W + s2 * torch.eye(J, dtype=DTYPE, device=W.device)
    chol = torch.linalg.cholesky(M)
    mean = torch.cholesky_solve(W.T @ (x - b).T, chol).T  # (N, J)
    cov = s2 * torch.cholesky_inverse(chol)
    return mean, 0.5 * (cov + cov.T)


def covariance_from_unconstrained(raw: Tensor) -> Tensor:
    """Any real ``(..., J, J)`` tensor -> a positive-definite covariance ``T T^T``, where ``T`` takes
    ``raw``'s strictly lower triangle and ``exp`` of its diagonal (so gradient steps on ``raw`` can
    never leave the positive-definite cone). ``raw = 0`` gives the identity."""
    raw = _matrix(raw, "raw")
    if raw.dim() < 2 or raw.shape[-1] != raw.shape[-2] or raw.shape[-1] == 0:
        raise ValueError(f"raw: expected shape (..., J, J) with J >= 1, got {tuple(raw.shape)}")
    T = torch.tril(raw, -1) + torch.diag_embed(torch.diagonal(raw, dim1=-2, dim2=-1).exp())  # lower-triangular
    return T @ T.mT


# ----------------------------------------------------------------------------------------
# the ELBO (KL divergences: gaussian.kl for a diagonal q, gaussian.kl_mvn for a full covariance)


def _q_moments(x, W, q_mean, q_cov, q_logvar):
    """Check q's parameters; return (mean (N, J), cov (J, J) | (N, J, J) | None, logvar | None)."""
    n, J = x.shape[0], W.shape[1]
    if (q_cov is None) == (q_logvar is None):
        raise ValueError("q_cov, q_logvar: give exactly one (a full covariance, or a diagonal log-variance)")
    q_mean = _check_rows(q_mean, "q_mean", n, J, "one J-dimensional mean per data point")
    if q_cov is not None:
        return q_mean, _check_cov(q_cov, "q_cov", n, J), None
    return q_mean, None, _check_rows(q_logvar, "q_logvar", n, J, "one diagonal log-variance per data point")


def elbo_parts(x: Tensor, W: Tensor, b: Tensor, noise_var, q_mean: Tensor, q_cov: Tensor | None = None,
               *, q_logvar: Tensor | None = None) -> ElboParts:
    """The ELBO of a Gaussian q(z|x) = N(q_mean, S) in closed form, with its two terms.

    Expected log-likelihood (the Gaussian decoder averaged over q; E[(z-m)(z-m)^T] = S):

        E_q[log p(x|z)] = -D/2 ln(2 pi s^2) - ( ||x - W m - b||^2 + tr(W S W^T) ) / (2 s^2)

    KL to the prior N(0, I) (Kingma & Welling 2014, App. B, in full-covariance form):

        KL(q || p(z)) = 1/2 [ tr S + m^T m - J - ln det S ].

    Args:
        x: ``(N, D)``. W, b, noise_var: the model. q_mean: ``(N, J)``.
        q_cov: ``(J, J)`` or ``(N, J, J)`` full covariance of q, or
        q_logvar: ``(N, J)`` log-variances of a diagonal q (what a VAE's encoder outputs).

    Returns:
        ``ElboParts(elbo, expected_log_likelihood, kl)``, each ``(N,)`` nats.
    """
    W, b, s2 = _check_model(W, b, noise_var)
    D, J = W.shape
    x = _check_rows(x, "x", None, D, "N data points of dimension D = W.shape[0]")
    m, S, logvar = _q_moments(x, W, q_mean, q_cov, q_logvar)
    residual = x - m @ W.T - b
    WtW = W.T @ W
    if S is not None:
        trace_wsw = (WtW * S).sum((-2, -1))  # tr(W S W^T) = sum_ij (W^T W)_ij S_ij (S symmetric)
        eye = torch.eye(J, dtype=DTYPE, device=m.device)
        kl = gaussian.kl_mvn(m, S, torch.zeros_like(m), eye)
    else:
        trace_wsw = (torch.diagonal(WtW) * logvar.exp()).sum(-1)
        kl = gaussian.kl(m, logvar)
    expected = -0.5 * D * torch.log(2 * math.pi * s2) - (residual.pow(2).sum(-1) + trace_wsw) / (2 * s2)
    return ElboParts(expected - kl, expected, kl.expand_as(expected))


def elbo(x: Tensor, W: Tensor, b: Tensor, noise_var, q_mean: Tensor, q_cov: Tensor | None = None,
         *, q_logvar: Tensor | None = None) -> Tensor:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), closed form, ``(N,)`` nats; <= ``log_marginal``.

    Arguments as ``elbo_parts`` (give ``q_cov`` or ``q_logvar``).
    """
    return elbo_parts(x, W, b, noise_var, q_mean, q_cov, q_logvar=q_logvar).elbo


def elbo_monte_carlo(x: Tensor, W: Tensor, b: Tensor, noise_var, q_mean: Tensor, q_cov: Tensor | None = None,
                     *, q_logvar: Tensor | None = None, n_samples: int = 1000,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """The ELBO estimated by sampling, as a VAE does: the mean of log p(x, z) - log q(z|x) over
    ``n_samples`` reparameterized draws z = m + T eps (T T^T = S, T lower-triangular, eps ~ N(0, I); Kingma & Welling
    2014, Sec. 2.4 and eq. 6). Uses its own generator (``seed``); the global RNG is untouched.

    Returns:
        ``(estimate (N,), stderr (N,))`` nats: the sample mean and its standard error.
    """
    W, b, s2 = _check_model(W, b, noise_var)
    _check_int(n_samples, "n_samples")
    x = _check_rows(x, "x", None, W.shape[0], "N data points of dimension D = W.shape[0]")
    m, S, logvar = _q_moments(x, W, q_mean, q_cov, q_logvar)
    n, J = m.shape
    g = torch.Generator().manual_seed(validate.seed(seed))
    eps = torch.randn(n_samples, n, J, generator=g, dtype=DTYPE).to(m.device)
    if S is None:
        S = torch.diag_embed(logvar.exp())
    chol = torch.linalg.cholesky(S).expand(n, J, J)
    z = m + (chol @ eps.unsqueeze(-1)).squeeze(-1)  # (n_samples, N, J)
    log_q = torch.distributions.MultivariateNormal(m, scale_tril=chol).log_prob(z)
    values = log_joint(x, z, W, b, s2) - log_q
    return stats.mean_and_stderr(values, dim=0)
