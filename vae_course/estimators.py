"""KL divergences between Gaussians, by closed form and by Monte Carlo, and the helpers that
notebook 03 ("The KL divergence, derived") checks its derivation with.

Everything is in nats. Where the other modules work per example on ``(N, J)`` batches of
diagonal Gaussians, ``kl_mvn`` takes full covariance matrices and computes in float64, so it
can serve as a reference for ``losses.gaussian_kl`` and for ``torch.distributions``.

Sources: the KL divergence and KL >= 0, Bishop (2006), *Pattern Recognition and Machine
Learning*, Sec. 1.6.1; the mean of a quadratic form, Petersen & Pedersen (2012), *The Matrix
Cookbook*, "Mean of quadratic form"; the Gaussian KL against N(0, I) with a diagonal covariance,
Kingma & Welling (2014), "Auto-Encoding Variational Bayes", Appendix B.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_course import validate

__all__ = [
    "KLGradients",
    "inverse_softplus",
    "kl_gradients",
    "kl_mvn",
    "log_normal_diag",
    "monte_carlo_kl",
    "softplus_std",
]

# Monte Carlo samples are drawn in chunks of at most this many numbers (samples x N x J),
# so a large n_samples never needs more than ~64 MB of float64 at once.
_CHUNK_ELEMENTS = 1 << 23


def _check_finite(value: Tensor, name: str) -> Tensor:
    return validate.finite(validate.floating(value, name), name)


def _check_mvn(mu: Tensor, mu_name: str, cov: Tensor, cov_name: str) -> tuple[Tensor, Tensor]:
    """Check one Gaussian's mean ``(..., k)`` and covariance ``(..., k, k)``; return its float64
    mean and lower Cholesky factor."""
    _check_finite(mu, mu_name)
    _check_finite(cov, cov_name)
    if mu.dim() < 1 or mu.shape[-1] == 0:
        raise ValueError(f"{mu_name}: expected shape (..., k) with k >= 1, got {tuple(mu.shape)}")
    k = mu.shape[-1]
    if cov.dim() < 2 or cov.shape[-2:] != (k, k):
        raise ValueError(f"{cov_name}: expected shape (..., {k}, {k}) to match {mu_name} (k={k}), "
                         f"got {tuple(cov.shape)}")
    cov64 = cov.to(torch.float64)
    scale = cov64.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
    tol = torch.finfo(cov.dtype).eps ** 0.5  # float32: 3e-4, float64: 1.5e-8 (relative)
    if not bool(((cov64 - cov64.transpose(-2, -1)).abs() <= tol * scale).all()):
        raise ValueError(f"{cov_name}: expected a symmetric matrix (cov == cov.T), got an asymmetric one")
    chol, info = torch.linalg.cholesky_ex(cov64)
    if bool((info != 0).any()):
        raise ValueError(f"{cov_name}: expected a positive-definite covariance matrix, "
                         f"but its Cholesky factorization failed (an eigenvalue is <= 0)")
    return mu.to(torch.float64), chol


def kl_mvn(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """KL( N(mu1, cov1) || N(mu2, cov2) ) for full covariance matrices, in nats, float64.

    ``1/2 [ tr(cov2^-1 cov1) + (mu2 - mu1)^T cov2^-1 (mu2 - mu1) - k + ln(det cov2 / det cov1) ]``
    (e.g. Bishop 2006; derived step by step in notebook 03). Computed from Cholesky factors
    ``cov = L L^T``: ``tr(cov2^-1 cov1) = ||L2^-1 L1||_F^2``, the quadratic form is
    ``||L2^-1 (mu2 - mu1)||^2`` and ``ln det cov = 2 sum_i ln L_ii``, which is exact and stable
    where inverting the matrices would lose digits.

    Args:
        mu1, mu2: ``(..., k)`` means (any floating dtype; batch dimensions broadcast).
        cov1, cov2: ``(..., k, k)`` symmetric positive-definite covariance matrices.

    Returns:
        ``(...)`` float64 tensor (the broadcast batch shape; a 0-d tensor for single Gaussians),
        >= 0, and 0 exactly when the two Gaussians are equal.

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: a shape does not fit (``mu`` must be ``(..., k)``, ``cov`` ``(..., k, k)``,
            both Gaussians the same k), a value is NaN/inf, or a covariance is not symmetric
            positive definite. The message names the argument.
    """
    mu1, chol1 = _check_mvn(mu1, "mu1", cov1, "cov1")
    mu2, chol2 = _check_mvn(mu2, "mu2", cov2, "cov2")
    k = mu1.shape[-1]
    if mu2.shape[-1] != k:
        raise ValueError(f"mu2: expected the same dimension k={k} as mu1, got shape {tuple(mu2.shape)}")
    try:
        batch = torch.broadcast_shapes(mu1.shape[:-1], mu2.shape[:-1], chol1.shape[:-2], chol2.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"mu1, cov1, mu2, cov2: batch shapes do not broadcast ({tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)})") from err
    chol1 = chol1.expand(*batch, k, k)
    chol2 = chol2.expand(*batch, k, k)
    diff = (mu2 - mu1).expand(*batch, k).unsqueeze(-1)
    trace_term = torch.linalg.solve_triangular(chol2, chol1, upper=False).pow(2).sum(dim=(-2, -1))
    mahalanobis = torch.linalg.solve_triangular(chol2, diff, upper=False).pow(2).sum(dim=(-2, -1))
    logdet1 = 2.0 * chol1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2.0 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace_term + mahalanobis - k + logdet2 - logdet1)


def log_normal_diag(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dimension, in nats.

    ``-1/2 sum_j [ ln(2 pi) + logvar_j + (z_j - mu_j)^2 / exp(logvar_j) ]``. Shapes broadcast;
    the result has the broadcast shape without its last dimension.
    """
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def _check_prior(value: Tensor | None, name: str, like: Tensor) -> Tensor:
    if value is None:
        return torch.zeros_like(like)
    _check_finite(value, name)
    try:
        fits = torch.broadcast_shapes(value.shape, like.shape) == like.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"{name}: expected a shape that broadcasts to {tuple(like.shape)}, got {tuple(value.shape)}")
    return value.to(like.dtype).expand_as(like)


def monte_carlo_kl(
    mu: Tensor,
    logvar: Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
    mu_p: Tensor | None = None,
    logvar_p: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo estimate of KL( q || p ) = E_q[ log q(z) - log p(z) ], per example, in nats.

    q = N(mu, diag exp(logvar)) and p = N(mu_p, diag exp(logvar_p)) (default: N(0, I)). Draws
    ``n_samples`` z ~ q by reparameterization (z = mu + sigma * eps), evaluates the log-density
    ratio summed over the J latent dimensions, and averages: no closed form is used, so this checks
    ``losses.gaussian_kl`` and ``kl_mvn`` from the definition alone. Computed in float64.

    Args:
        mu, logvar: ``(N, J)`` mean and log-variance of q (J latent dimensions).
        n_samples: number of z samples per example (>= 2, for the standard error).
        generator: a ``torch.Generator`` on ``mu``'s device, for reproducible samples
            (``None``: torch's global RNG).
        mu_p, logvar_p: ``(N, J)`` or broadcastable (e.g. ``(J,)``) parameters of p; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(estimate, stderr)``, each ``(N,)`` float64 in nats: the sample mean of the log ratio
        and its standard error (sample standard deviation / sqrt(n_samples)). The estimate is
        unbiased; it lies within a few standard errors of the true KL, and may be negative for
        q close to p, although the KL itself never is.

    Raises:
        TypeError: a tensor argument is not floating point, or ``generator`` is not a Generator.
        ValueError: ``mu`` is not 2-D, shapes differ, values are NaN/inf, ``n_samples`` < 2.
    """
    _check_finite(mu, "mu")
    _check_finite(logvar, "logvar")
    if mu.dim() != 2:
        raise ValueError(f"mu: expected shape (N, J), got {tuple(mu.shape)}")
    validate.same_shape(mu, "mu", logvar, "logvar")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples: expected an int >= 2 (the standard error needs two samples), got {n_samples!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    mu, logvar = mu.detach().to(torch.float64), logvar.detach().to(torch.float64)
    mu_p = _check_prior(mu_p, "mu_p", mu).detach()
    logvar_p = _check_prior(logvar_p, "logvar_p", mu).detach()
    std = torch.exp(0.5 * logvar)

    # Chan et al.'s pairwise update of (count, mean, sum of squared deviations), chunk by chunk.
    count, mean, m2 = 0, torch.zeros_like(mu[:, 0]), torch.zeros_like(mu[:, 0])
    chunk = max(1, _CHUNK_ELEMENTS // max(1, mu.numel()))
    for start in range(0, n_samples, chunk):
        s = min(chunk, n_samples - start)
        eps = torch.randn((s, *mu.shape), generator=generator, dtype=torch.float64).to(mu.device)  # CPU generator, any device
        z = mu + std * eps
        log_ratio = log_normal_diag(z, mu, logvar) - log_normal_diag(z, mu_p, logvar_p)  # (s, N)
        c_mean = log_ratio.mean(0)
        c_m2 = (log_ratio - c_mean).pow(2).sum(0)
        delta = c_mean - mean
        total = count + s
        mean = mean + delta * (s / total)
        m2 = m2 + c_m2 + delta.pow(2) * (count * s / total)
        count = total
    stderr = torch.sqrt(m2 / (count - 1) / count)
    return mean, stderr


class KLGradients(NamedTuple):
    """Hand-derived partial derivatives of KL( N(mu, sigma^2) || N(0, 1) ) per latent dimension.

    Each field has the shape of ``mu``: the derivative with respect to that parameter, the
    others held fixed (``var`` = sigma^2, ``logvar`` = ln sigma^2, ``std`` = sigma).
    """

    mu: Tensor
    var: Tensor
    logvar: Tensor
    std: Tensor


def kl_gradients(mu: Tensor, logvar: Tensor) -> KLGradients:
    """Gradients of ``KL = 1/2 sum_j (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)`` derived by hand.

    ``dKL/dmu = mu``; ``dKL/d(sigma^2) = 1/2 - 1/(2 sigma^2)``; ``dKL/d(ln sigma^2) =
    (sigma^2 - 1)/2``; ``dKL/dsigma = sigma - 1/sigma``. All vanish at the prior (mu = 0,
    sigma = 1), the KL's only minimum. Notebook 03 and the tests compare them with autograd.

    Args:
        mu, logvar: tensors of the same shape (e.g. ``(N, J)``), floating point.

    Returns:
        ``KLGradients(mu, var, logvar, std)``, each the shape of ``mu``.

    Raises:
        TypeError / ValueError: not floating point, or shapes differ.
    """
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    validate.same_shape(mu, "mu", logvar, "logvar")
    var = torch.exp(logvar)
    std = torch.exp(0.5 * logvar)
    return KLGradients(mu=mu.clone(), var=0.5 - 0.5 / var, logvar=0.5 * (var - 1.0), std=std - 1.0 / std)


def softplus_std(s: Tensor, min_std: float = 0.0) -> Tensor:
    """The standard deviation from an unconstrained encoder output ``s``: ``softplus(s) + min_std``.

    ``softplus(s) = ln(1 + e^s)`` is positive, close to ``e^s`` for ``s << 0`` and to ``s`` for
    ``s >> 0``, so sigma grows linearly, not exponentially as with ``sigma = exp(logvar / 2)``;
    its derivative is ``sigmoid(s)``, in (0, 1). In float32 ``softplus(s)`` underflows to 0
    below ``s ~ -104`` (``sigma^2`` already below ``s ~ -52``); ``min_std > 0`` keeps sigma away
    from 0.

    Args:
        s: any floating-point tensor.
        min_std: a floor added to sigma (>= 0).

    Returns:
        sigma, the shape of ``s``, > 0 (>= ``min_std``).
    """
    validate.floating(s, "s")
    min_std = validate.positive_float(min_std, "min_std", allow_zero=True)
    return F.softplus(s) + min_std


def inverse_softplus(std: Tensor) -> Tensor:
    """The ``s`` with ``softplus(s) == std``: ``s = std + ln(1 - e^(-std))`` (stable for all
    std > 0). Use it to convert a standard deviation into the softplus parameterization.

    Raises:
        TypeError: not floating point. ValueError: a value is not > 0 (or NaN).
    """
    validate.floating(std, "std")
    if not bool((std > 0).all()):
        raise ValueError(f"std: expected values > 0, got minimum {float(std.min()):.4g}")
    return std + torch.log(-torch.expm1(-std))
