"""The Gaussian's math, once: densities, KL divergences (closed form and Monte Carlo), the KL's
gradients, covariance checks, the standard-deviation parameterizations and the reparameterized
sample. Every other module of the package calls these functions instead of writing a formula again.

Everything is in nats. Diagonal Gaussians are given by a mean ``mu`` and a log-variance
``logvar = ln sigma^2`` (what a VAE's encoder outputs), usually ``(N, J)``: N examples, J latent
dimensions. Full-covariance Gaussians (``kl_mvn``, ``check_covariance``) take ``(..., k, k)``
covariance matrices and compute in float64.

Sources: the Gaussian density and the KL divergence, Bishop (2006), *Pattern Recognition and
Machine Learning*, eq. 2.43 and Sec. 1.6.1; the KL of a diagonal Gaussian against N(0, I) and the
reparameterization ``z = mu + sigma * eps``, Kingma & Welling (2014), "Auto-Encoding Variational
Bayes", Appendix B and Sec. 2.4; the mean of a quadratic form (the full-covariance KL), Petersen &
Pedersen (2012), *The Matrix Cookbook*, "Mean of quadratic form". Notebook 03 derives the KL.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_course import stats, validate

__all__ = [
    "KLGradients",
    "LOGVAR_MAX",
    "LOGVAR_MIN",
    "LOG_2PI",
    "check_covariance",
    "clamp_logvar",
    "inverse_softplus",
    "kl",
    "kl_1d",
    "kl_gradients",
    "kl_mvn",
    "kl_per_dim",
    "log_prob",
    "mixture_log_prob",
    "monte_carlo_kl",
    "monte_carlo_kl_estimate",
    "reparameterize",
    "softplus_std",
]

LOG_2PI = math.log(2 * math.pi)

# exp(logvar) overflows float32 past logvar ~ 88.7, and sigma underflows towards 0 far below.
# Clamping to this range keeps densities, KLs and their gradients finite for any encoder output;
# inside it, every formula is exact. (Gradients are zero outside the range.)
LOGVAR_MIN, LOGVAR_MAX = -30.0, 30.0

# Monte Carlo samples are drawn in chunks of at most this many numbers (samples x N x J),
# so a large n_samples never needs more than ~64 MB of float64 at once.
_CHUNK_ELEMENTS = 1 << 23


# ---------------------------------------------------------------- parameterizations and sampling


def clamp_logvar(logvar: Tensor) -> Tensor:
    """Clamp a log-variance to ``[LOGVAR_MIN, LOGVAR_MAX]`` = [-30, 30] so ``exp`` stays finite.

    Args:
        logvar: any tensor (any shape).

    Returns:
        The same shape; values outside the range moved to its ends (their gradient is 0).
    """
    return logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    """A sample of N(mu, diag exp(logvar)) as a differentiable function of its parameters:
    ``z = mu + sigma * eps`` with ``sigma = exp(logvar / 2)`` and ``eps ~ N(0, I)`` (Kingma &
    Welling 2014, Sec. 2.4). The log-variance is clamped first (``clamp_logvar``).

    Args:
        mu, logvar: ``(N, J)`` (or any equal shapes) mean and log-variance.
        eps: standard normal noise of that shape; ``None`` draws it with ``torch.randn_like``
            (torch's global RNG).

    Returns:
        ``z``, the shape of ``mu``; gradients reach ``mu`` and ``logvar``.
    """
    std = torch.exp(0.5 * clamp_logvar(logvar))
    return mu + std * (torch.randn_like(std) if eps is None else eps)


def softplus_std(s: Tensor, min_std: float = 0.0) -> Tensor:
    """The standard deviation from an unconstrained encoder output ``s``: ``softplus(s) + min_std``.

    ``softplus(s) = ln(1 + e^s)`` is positive, close to ``e^s`` for ``s << 0`` and to ``s`` for
    ``s >> 0``, so sigma grows linearly, not exponentially as with ``sigma = exp(logvar / 2)``;
    its derivative is ``sigmoid(s)``, in (0, 1). In float32 ``softplus(s)`` underflows to 0
    below ``s ~ -104`` (``sigma^2`` already below ``s ~ -52``); ``min_std > 0`` keeps sigma away
    from 0. Notebook 03 compares the two parameterizations.

    Args:
        s: any floating-point tensor.
        min_std: a floor added to sigma (>= 0).

    Returns:
        sigma, the shape of ``s``, > 0 (>= ``min_std``).

    Raises:
        TypeError: ``s`` is not a floating-point tensor. ValueError: ``min_std`` < 0, NaN or inf.
    """
    validate.floating(s, "s")
    min_std = validate.positive_float(min_std, "min_std", allow_zero=True)
    return F.softplus(s) + min_std


def inverse_softplus(std: Tensor) -> Tensor:
    """The ``s`` with ``softplus(s) == std``: ``s = std + ln(1 - e^(-std))`` (stable for all
    std > 0). Use it to convert a standard deviation into the softplus parameterization.

    Args:
        std: any floating-point tensor of values > 0.

    Returns:
        ``s``, the shape of ``std``.

    Raises:
        TypeError: not floating point. ValueError: a value is not > 0 (or NaN).
    """
    validate.floating(std, "std")
    if not bool((std > 0).all()):
        raise ValueError(f"std: expected values > 0, got minimum {float(std.min()):.4g}")
    return std + torch.log(-torch.expm1(-std))


# ---------------------------------------------------------------- densities


def log_prob(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension, in nats (Bishop 2006, eq. 2.43):

    ``-1/2 * sum_j (ln 2 pi + logvar_j + (z_j - mu_j)^2 / exp(logvar_j))``. The defaults give the
    standard normal N(0, I). The log-variance is clamped to [-30, 30] (``clamp_logvar``).

    Args:
        z: ``(..., J)`` points.
        mu, logvar: floats or tensors that broadcast against ``z`` (e.g. ``(N, J)`` against
            ``(S, N, J)`` samples, or ``(C, J)`` components against ``(N, 1, J)`` points);
            converted to ``z``'s dtype.

    Returns:
        ``(...)`` nats: the broadcast shape without its last dimension.

    Raises:
        TypeError: ``z`` is not a floating-point tensor.
    """
    validate.floating(z, "z")
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    logvar = clamp_logvar(torch.as_tensor(logvar, dtype=z.dtype, device=z.device))
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * (-logvar).exp()).sum(-1)


def mixture_log_prob(z: Tensor, means: Tensor, logvars: Tensor, logits: Tensor) -> Tensor:
    """log p(z) of a mixture of C diagonal Gaussians, in nats:
    ``log sum_k pi_k N(z; m_k, diag exp(v_k))`` with ``pi = softmax(logits)``, computed as a
    ``logsumexp`` over components (no ``exp`` of a log-density, so no underflow far from the means).

    The mixture-of-Gaussians prior of Dilokthanakul et al. (2016) and Tomczak & Welling (2018,
    "VAE with a VampPrior", Sec. 2), whose VampPrior is a mixture with encoder-made components.

    Args:
        z: ``(..., J)`` points.
        means, logvars: ``(C, J)`` each component's mean and log-variance.
        logits: ``(C,)`` unnormalised log mixture weights.

    Returns:
        ``(...)`` log-densities, nats.

    Raises:
        TypeError: a non-float tensor. ValueError: shapes that do not match (names the argument).
    """
    for value, name in ((z, "z"), (means, "means"), (logvars, "logvars"), (logits, "logits")):
        validate.floating(value, name)
    if means.dim() != 2:
        raise ValueError(f"means: expected shape (C, J), got {tuple(means.shape)}")
    validate.same_shape(means, "means", logvars, "logvars")
    if tuple(logits.shape) != (means.shape[0],):
        raise ValueError(f"logits: expected shape ({means.shape[0]},) (one per component), got {tuple(logits.shape)}")
    if z.dim() < 1 or z.shape[-1] != means.shape[1]:
        raise ValueError(f"z: expected shape (..., {means.shape[1]}) to match the means, got {tuple(z.shape)}")
    log_weights = torch.log_softmax(logits, dim=0)              # (C,)
    per_component = log_prob(z.unsqueeze(-2), means, logvars)   # (..., C)
    return torch.logsumexp(per_component + log_weights, dim=-1)


# ---------------------------------------------------------------- KL divergence, closed form


def _broadcasts_to(value: Tensor, name: str, like: Tensor) -> Tensor:
    """Check that the floating-point tensor ``value`` broadcasts to ``like``'s shape (a prior's
    parameters against q's)."""
    validate.floating(value, name)
    try:
        fits = torch.broadcast_shapes(value.shape, like.shape) == like.shape
    except RuntimeError:  # shapes that do not broadcast at all
        fits = False
    if not fits:
        raise ValueError(f"{name}: expected a shape that broadcasts to {tuple(like.shape)}, got {tuple(value.shape)}")
    return value


def _check_q(mu: Tensor, logvar: Tensor) -> None:
    """q's parameters: two floating-point ``(N, J)`` tensors of the same shape."""
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    if mu.dim() != 2:
        raise ValueError(f"mu: expected shape (N, J), got {tuple(mu.shape)}")
    validate.same_shape(mu, "mu", logvar, "logvar")


def kl_per_dim(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None,
               logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) for each latent dimension, in nats.

    With the default prior N(0, I), dimension j contributes ``1/2 (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)``
    (Kingma & Welling 2014, Appendix B). In general, for diagonal Gaussians,
    ``1/2 (ln s_p^2 - ln s^2 + (s^2 + (mu - mu_p)^2) / s_p^2 - 1)``. A diagonal Gaussian's KL is a
    sum of one-dimensional KLs, so this is the one formula; ``kl`` sums it over j. Log-variances
    are clamped to [-30, 30] (``clamp_logvar``).

    Args:
        mu, logvar: ``(N, J)`` mean and log-variance of q(z|x).
        mu_p, logvar_p: ``(N, J)`` or ``(J,)`` (broadcast) parameters of the prior; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(N, J)`` KL divergence in nats of each latent dimension (>= 0).

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: ``mu`` is not 2-D or the shapes do not broadcast to ``mu``'s shape.
    """
    _check_q(mu, logvar)
    logvar = clamp_logvar(logvar)
    if mu_p is None and logvar_p is None:
        # expm1(v) - v = exp(v) - v - 1 >= 0, computed without cancellation near v = 0 (in float32,
        # exp(v) - v - 1 can round below zero); the clamp removes what rounding is left.
        return 0.5 * ((torch.expm1(logvar) - logvar).clamp_min(0.0) + mu.pow(2))
    mu_p = torch.zeros_like(mu) if mu_p is None else _broadcasts_to(mu_p, "mu_p", mu)
    logvar_p = torch.zeros_like(mu) if logvar_p is None else _broadcasts_to(logvar_p, "logvar_p", mu)
    logvar_p = clamp_logvar(logvar_p)
    diff = logvar - logvar_p  # ln(s^2 / s_p^2); the same expm1 form as above
    return 0.5 * ((torch.expm1(diff) - diff).clamp_min(0.0) + (mu - mu_p).pow(2) * (-logvar_p).exp())


def kl(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) per example, in nats.

    With the default prior N(0, I) this is ``1/2 * sum_j (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)``
    (Kingma & Welling 2014, Appendix B): ``kl_per_dim`` summed over the J dimensions. This is the
    VAE's KL term.

    Args:
        mu, logvar: ``(N, J)`` mean and log-variance of q(z|x).
        mu_p, logvar_p: ``(N, J)`` or ``(J,)`` (broadcast) parameters of the prior; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(N,)`` KL divergence in nats, summed over the J latent dimensions (>= 0).

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: ``mu`` is not 2-D or the shapes do not broadcast to ``mu``'s shape.
    """
    return kl_per_dim(mu, logvar, mu_p, logvar_p).sum(dim=1)


def kl_1d(mu: float, sigma: float) -> float:
    """KL( N(mu, sigma^2) || N(0, 1) ) = 1/2 (sigma^2 - ln sigma^2 - 1 + mu^2) in nats, for one
    latent dimension given by its mean and standard deviation (``kl`` in float64): what the
    KL explorer widget and its figure show.

    Args:
        mu: a finite real number. sigma: a finite real number > 0.

    Returns:
        A float >= 0, nats.

    Raises:
        TypeError / ValueError: ``mu`` not a finite number, ``sigma`` not a finite number > 0.
    """
    mu, sigma = validate.real(mu, "mu"), validate.positive_float(sigma, "sigma")
    mu_t = torch.tensor([[mu]], dtype=torch.float64)
    logvar_t = torch.tensor([[2.0 * math.log(sigma)]], dtype=torch.float64)
    return float(kl(mu_t, logvar_t))


def check_covariance(cov: Tensor, name: str, k: int | None = None) -> Tensor:
    """Check that ``cov`` is a batch of covariance matrices and return their Cholesky factors.

    A covariance must be finite, square ``(..., k, k)``, symmetric (within ``sqrt(eps)`` of its
    dtype, relative to its largest entry: 3e-4 in float32, 1.5e-8 in float64) and positive
    definite, which is exactly when its Cholesky factorization ``cov = L L^T`` exists (Golub & Van
    Loan 2013, *Matrix Computations*, Sec. 4.2). The one positive-definiteness check of the package.

    Args:
        cov: ``(..., k, k)`` floating-point tensor.
        name: the argument's name, for error messages.
        k: the expected size, or ``None`` for any k >= 1.

    Returns:
        ``(..., k, k)`` float64 lower-triangular Cholesky factors ``L`` (autograd flows through).

    Raises:
        TypeError: not a floating-point tensor.
        ValueError: NaN/inf, a shape that is not ``(..., k, k)``, an asymmetric matrix, or one that
            is not positive definite. The message names the argument.
    """
    validate.finite(validate.floating(cov, name), name)
    size = cov.shape[-1] if cov.dim() >= 1 else 0
    if cov.dim() < 2 or cov.shape[-2] != size or size == 0 or (k is not None and size != k):
        want = "(..., k, k) with k >= 1" if k is None else f"(..., {k}, {k})"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(cov.shape)}")
    cov64 = cov.to(torch.float64)
    scale = cov64.detach().abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
    tol = torch.finfo(cov.dtype).eps ** 0.5
    if not bool(((cov64 - cov64.transpose(-2, -1)).detach().abs() <= tol * scale).all()):
        raise ValueError(f"{name}: expected a symmetric matrix (cov == cov.T), got an asymmetric one")
    chol, info = torch.linalg.cholesky_ex(cov64)
    if bool((info != 0).any()):
        raise ValueError(f"{name}: expected a positive-definite covariance matrix, "
                         f"but its Cholesky factorization failed (an eigenvalue is <= 0)")
    return chol


def kl_mvn(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> Tensor:
    """KL( N(mu1, cov1) || N(mu2, cov2) ) for full covariance matrices, in nats, float64.

    ``1/2 [ tr(cov2^-1 cov1) + (mu2 - mu1)^T cov2^-1 (mu2 - mu1) - k + ln(det cov2 / det cov1) ]``
    (Bishop 2006, exercise 2.13; derived step by step in notebook 03). Computed from Cholesky
    factors ``cov = L L^T``: ``tr(cov2^-1 cov1) = ||L2^-1 L1||_F^2``, the quadratic form is
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
    for value, name in ((mu1, "mu1"), (mu2, "mu2")):
        validate.finite(validate.floating(value, name), name)
    if mu1.dim() < 1 or mu1.shape[-1] == 0:
        raise ValueError(f"mu1: expected shape (..., k) with k >= 1, got {tuple(mu1.shape)}")
    k = mu1.shape[-1]
    if mu2.dim() < 1 or mu2.shape[-1] != k:
        raise ValueError(f"mu2: expected the same dimension k={k} as mu1, got shape {tuple(mu2.shape)}")
    chol1 = check_covariance(cov1, "cov1", k)
    chol2 = check_covariance(cov2, "cov2", k)
    try:
        batch = torch.broadcast_shapes(mu1.shape[:-1], mu2.shape[:-1], chol1.shape[:-2], chol2.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"mu1, cov1, mu2, cov2: batch shapes do not broadcast ({tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)})") from err
    chol1 = chol1.expand(*batch, k, k)
    chol2 = chol2.expand(*batch, k, k)
    diff = (mu2.to(torch.float64) - mu1.to(torch.float64)).expand(*batch, k).unsqueeze(-1)
    trace_term = torch.linalg.solve_triangular(chol2, chol1, upper=False).pow(2).sum(dim=(-2, -1))
    mahalanobis = torch.linalg.solve_triangular(chol2, diff, upper=False).pow(2).sum(dim=(-2, -1))
    logdet1 = 2.0 * chol1.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet2 = 2.0 * chol2.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace_term + mahalanobis - k + logdet2 - logdet1)


# ---------------------------------------------------------------- KL divergence, Monte Carlo


def monte_carlo_kl(z: Tensor, mu: Tensor, logvar: Tensor, log_prior: Tensor) -> Tensor:
    """Monte Carlo terms of KL(q(z|x) || p(z)): ``log q(z|x) - log p(z)`` at samples ``z ~ q(z|x)``,
    in nats, with q = N(mu, diag exp(logvar)).

    The KL is the expectation of this log ratio under q (Kingma & Welling 2014, eq. 6 with the
    KL inside the expectation), so each term is an unbiased one-sample estimate: noisy, and a
    single one can be negative. Used when the KL has no closed form (a mixture prior, notebook
    08), and by ``monte_carlo_kl_estimate``, which averages many.

    Args:
        z: ``(..., N, J)`` samples of q (reparameterized, so gradients reach mu and logvar);
            leading dimensions are further samples.
        mu, logvar: ``(N, J)`` q(z|x)'s parameters (or the shape of ``z``).
        log_prior: ``(..., N)`` log p(z) at those samples.

    Returns:
        ``(..., N)`` nats: one term per sample and example.

    Raises:
        TypeError / ValueError: non-float tensors or shapes that do not fit (the message names the argument).
    """
    validate.floating(z, "z")
    validate.floating(log_prior, "log_prior")
    validate.same_shape(mu, "mu", logvar, "logvar")
    if z.dim() < mu.dim() or tuple(z.shape[z.dim() - mu.dim():]) != tuple(mu.shape):
        raise ValueError(f"z: expected shape (..., {', '.join(map(str, mu.shape))}) (samples of q, "
                         f"mu's shape at the end), got {tuple(z.shape)}")
    if tuple(log_prior.shape) != tuple(z.shape[:-1]):
        raise ValueError(f"log_prior: expected shape {tuple(z.shape[:-1])} (one per sample), got {tuple(log_prior.shape)}")
    return log_prob(z, mu, logvar) - log_prior


def monte_carlo_kl_estimate(
    mu: Tensor,
    logvar: Tensor,
    n_samples: int,
    generator: torch.Generator | None = None,
    mu_p: Tensor | None = None,
    logvar_p: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo estimate of KL( q || p ) per example, in nats, with its standard error.

    q = N(mu, diag exp(logvar)) and p = N(mu_p, diag exp(logvar_p)) (default: N(0, I)). Draws
    ``n_samples`` z ~ q by reparameterization (``reparameterize``), takes ``monte_carlo_kl``'s
    log ratio at each and averages: no closed form is used, so this checks ``kl`` and ``kl_mvn``
    from the definition alone. Computed in float64, the samples drawn in chunks of at most 2^23
    numbers (64 MB) at a time.

    Args:
        mu, logvar: ``(N, J)`` mean and log-variance of q (J latent dimensions).
        n_samples: number of z samples per example (>= 2, for the standard error).
        generator: a CPU ``torch.Generator`` for reproducible samples on any device (``None``:
            torch's global RNG).
        mu_p, logvar_p: ``(N, J)`` or broadcastable (e.g. ``(J,)``) parameters of p; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(estimate, stderr)``, each ``(N,)`` float64 in nats: the sample mean of the log ratio
        and its standard error (``stats.mean_and_stderr``). The estimate is unbiased; it lies
        within a few standard errors of the true KL, and may be negative for q close to p,
        although the KL itself never is.

    Raises:
        TypeError: a tensor argument is not floating point, or ``generator`` is not a Generator.
        ValueError: ``mu`` is not 2-D, shapes differ, values are NaN/inf, ``n_samples`` < 2.
    """
    _check_q(mu, logvar)
    validate.finite(mu, "mu")
    validate.finite(logvar, "logvar")
    n_samples = validate.integer(n_samples, "n_samples", low=2)  # the standard error needs two samples
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    mu, logvar = mu.detach().to(torch.float64), logvar.detach().to(torch.float64)
    prior = []
    for value, name in ((mu_p, "mu_p"), (logvar_p, "logvar_p")):
        if value is None:
            prior.append(torch.zeros_like(mu))
        else:
            validate.finite(_broadcasts_to(value, name, mu), name)
            prior.append(value.detach().to(torch.float64).expand_as(mu))
    mu_p, logvar_p = prior

    chunk = max(1, _CHUNK_ELEMENTS // max(1, mu.numel()))
    log_ratios = []
    for start in range(0, n_samples, chunk):
        s = min(chunk, n_samples - start)
        eps = torch.randn((s, *mu.shape), generator=generator, dtype=torch.float64).to(mu.device)  # CPU generator, any device
        z = reparameterize(mu, logvar, eps)                                        # (s, N, J)
        log_ratios.append(monte_carlo_kl(z, mu, logvar, log_prob(z, mu_p, logvar_p)))  # (s, N)
    return stats.mean_and_stderr(torch.cat(log_ratios), dim=0)


# ---------------------------------------------------------------- the KL's gradients


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
    sigma = 1), the KL's only minimum. Notebooks 03 and 06 and the tests compare them with autograd.

    Args:
        mu, logvar: tensors of the same shape (e.g. ``(N, J)``), floating point.

    Returns:
        ``KLGradients(mu, var, logvar, std)``, each the shape of ``mu``, nats per unit of that parameter.

    Raises:
        TypeError / ValueError: not floating point, or shapes differ.
    """
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    validate.same_shape(mu, "mu", logvar, "logvar")
    var = torch.exp(logvar)
    std = torch.exp(0.5 * logvar)
    return KLGradients(mu=mu.clone(), var=0.5 - 0.5 / var, logvar=0.5 * (var - 1.0), std=std - 1.0 / std)
