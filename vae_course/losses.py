"""The VAE's loss terms, per example, in nats.

Every function returns one number per example (shape ``(N,)``), summed over pixels or latent
dimensions, never averaged over them: averaging the reconstruction over 784 pixels while
summing the KL over latent dimensions silently weights the KL hundreds of times too strongly.

Sources: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", eq. 3 (the ELBO) and
Appendix B (the Gaussian KL); the Gaussian KL in general form, e.g. Bishop (2006) eq. 2.94 ff.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_course import validate

# exp(logvar) overflows float32 past logvar ~ 88.7, and sigma underflows towards 0 far below.
# Clamping to this range keeps the loss and its gradients finite for any encoder output;
# inside it, every formula is exact. (Gradients are zero outside the range.)
LOGVAR_MIN, LOGVAR_MAX = -30.0, 30.0


class LossParts(NamedTuple):
    """A loss and its parts, each per example ``(N,)`` in nats (or floats after averaging)."""

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


def clamp_logvar(logvar: Tensor) -> Tensor:
    """Clamp a log-variance to ``[LOGVAR_MIN, LOGVAR_MAX]`` so ``exp`` stays finite."""
    return logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)


def gaussian_kl_per_dim(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None,
                        logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) for each latent dimension, in nats.

    With the default prior N(0, I), dimension j contributes ``1/2 (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)``
    (Kingma & Welling 2014, Appendix B). In general, for diagonal Gaussians,
    ``1/2 (ln s_p^2 - ln s^2 + (s^2 + (mu - mu_p)^2) / s_p^2 - 1)``. A diagonal Gaussian's KL is a
    sum of one-dimensional KLs, so this is the one formula; ``gaussian_kl`` sums it over j.

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
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    if mu.dim() != 2:
        raise ValueError(f"mu: expected shape (N, J), got {tuple(mu.shape)}")
    validate.same_shape(mu, "mu", logvar, "logvar")
    logvar = clamp_logvar(logvar)
    if mu_p is None and logvar_p is None:
        # expm1(v) - v = exp(v) - v - 1 >= 0, computed without cancellation near v = 0 (in float32,
        # exp(v) - v - 1 can round below zero); the clamp removes what rounding is left.
        return 0.5 * ((torch.expm1(logvar) - logvar).clamp_min(0.0) + mu.pow(2))
    mu_p = torch.zeros_like(mu) if mu_p is None else validate.floating(mu_p, "mu_p")
    logvar_p = torch.zeros_like(mu) if logvar_p is None else validate.floating(logvar_p, "logvar_p")
    for value, name in ((mu_p, "mu_p"), (logvar_p, "logvar_p")):
        try:
            broadcast = torch.broadcast_shapes(value.shape, mu.shape)
        except RuntimeError:  # shapes that do not broadcast at all
            broadcast = None
        if broadcast != mu.shape:
            raise ValueError(f"{name}: expected a shape that broadcasts to {tuple(mu.shape)}, got {tuple(value.shape)}")
    logvar_p = clamp_logvar(logvar_p)
    diff = logvar - logvar_p  # ln(s^2 / s_p^2); the same expm1 form as above
    return 0.5 * ((torch.expm1(diff) - diff).clamp_min(0.0) + (mu - mu_p).pow(2) * (-logvar_p).exp())


def gaussian_kl(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) per example, in nats.

    With the default prior N(0, I) this is ``1/2 * sum_j (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)``
    (Kingma & Welling 2014, Appendix B): ``gaussian_kl_per_dim`` summed over the D dimensions.

    Args:
        mu, logvar: ``(N, J)`` mean and log-variance of q(z|x).
        mu_p, logvar_p: ``(N, J)`` or ``(J,)`` (broadcast) parameters of the prior; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(N,)`` KL divergence in nats, summed over the D latent dimensions (>= 0).

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: ``mu`` is not 2-D or the shapes do not broadcast to ``mu``'s shape.
    """
    return gaussian_kl_per_dim(mu, logvar, mu_p, logvar_p).sum(dim=1)


def free_bits_kl(kl_per_dim: Tensor, free_bits: float) -> Tensor:
    """The KL term of the free-bits objective, per example ``(N,)``, in nats.

    Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive Flow",
    Appendix C.8: the objective's KL term is ``sum_j max(lambda, E_x[KL_j])``, where ``E_x[KL_j]``
    is the KL of latent dimension j **averaged over the minibatch** (as in the paper, per dimension
    rather than per group of dimensions). A dimension whose batch-mean KL is below ``lambda``
    contributes the constant ``lambda`` and so gets no gradient from the KL: the encoder may use up
    to ``lambda`` nats in it for free. Above ``lambda`` the term is the ordinary KL.

    To keep one number per example, dimension j contributes ``KL_ij`` to example i when its batch
    mean is at least ``lambda``, else ``lambda``; the batch mean of the result is exactly
    ``sum_j max(lambda, mean_i KL_ij)``. ``free_bits = 0`` gives the plain KL (summed over j).

    Args:
        kl_per_dim: ``(N, J)`` KL of each latent dimension (``gaussian_kl_per_dim``).
        free_bits: lambda, nats per latent dimension (>= 0).

    Returns:
        ``(N,)`` nats. Use it only in the training objective: it is not a KL divergence.

    Raises:
        TypeError / ValueError: ``kl_per_dim`` not a 2-D float tensor; ``free_bits`` negative, NaN or inf.
    """
    validate.floating(kl_per_dim, "kl_per_dim")
    if kl_per_dim.dim() != 2:
        raise ValueError(f"kl_per_dim: expected shape (N, J), got {tuple(kl_per_dim.shape)}")
    free_bits = validate.positive_float(free_bits, "free_bits", allow_zero=True)
    if free_bits == 0.0:
        return kl_per_dim.sum(dim=1)
    below = kl_per_dim.mean(dim=0, keepdim=True).detach() < free_bits  # (1, J): which dimensions are free
    return torch.where(below, torch.full_like(kl_per_dim, free_bits), kl_per_dim).sum(dim=1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) for a Bernoulli decoder, per example, in nats (binary cross-entropy, summed).

    Computed from logits (never from sigmoid outputs: in float32 ``sigmoid(17.0) == 1.0``
    exactly, and ``log(1 - 1.0)`` is ``-inf``). For grayscale x in (0, 1) this is a cross-entropy,
    not the negative log of a normalized likelihood, but it is what VAEs on MNIST minimise.

    Args:
        logits: ``(N, ...)`` decoder outputs before the sigmoid.
        x: same shape, target pixel values in [0, 1].

    Returns:
        ``(N,)`` nats, summed over all pixels.

    Raises:
        TypeError / ValueError: non-float tensors, shapes that differ, x outside [0, 1].
    """
    validate.floating(logits, "logits")
    validate.floating(x, "x")
    validate.same_shape(logits, "logits", x, "x")
    if not bool(((x >= 0.0) & (x <= 1.0)).all()):  # also catches NaN, for which both comparisons are False
        raise ValueError(f"x: expected values in [0, 1], got values in [{float(x.min()):.4g}, {float(x.max()):.4g}]")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def gaussian_nll(mean: Tensor, x: Tensor, logvar: Tensor | float = 0.0) -> Tensor:
    """-log N(x; mean, exp(logvar)) per example, in nats, summed over pixels.

    ``1/2 * sum_i (ln 2 pi + logvar_i + (x_i - mean_i)^2 / exp(logvar_i))``. With a fixed
    variance this is the squared error (MSE) up to a scale and a constant: the "MSE decoder".

    Args:
        mean: ``(N, ...)`` decoder means.
        x: same shape, the data.
        logvar: a float or a tensor broadcastable to ``x``: the decoder's log-variance (default 0,
            i.e. unit variance).

    Returns:
        ``(N,)`` nats.
    """
    validate.floating(mean, "mean")
    validate.floating(x, "x")
    validate.same_shape(mean, "mean", x, "x")
    if not isinstance(logvar, Tensor):
        logvar = torch.tensor(float(logvar), dtype=mean.dtype, device=mean.device)
    logvar = clamp_logvar(logvar)
    per_pixel = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).pow(2) * (-logvar).exp())
    return per_pixel.expand_as(x).flatten(1).sum(dim=1)


# Below this |logit|, log C uses its Taylor series: the closed form's two logarithms cancel there
# (their gradients are both ~1/logit). The next term of the series at the edge: 73/34214400 * 0.5**10 ~ 2e-9.
_CB_TAYLOR_BELOW = 0.5


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    """log C(lambda) of the continuous Bernoulli, elementwise, from logits eta (lambda = sigmoid(eta)).

    The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, eq. 7) is the density
    ``p(x | lambda) = C(lambda) lambda^x (1 - lambda)^(1 - x)`` on x in [0, 1], with
    ``C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)`` (and C(1/2) = 2). In logits this is
    ``C = eta / tanh(eta / 2)``, so ``log C = log|eta| - log tanh(|eta| / 2)``, computed for
    |eta| >= 0.5 in that form (``log tanh(u) = log(-expm1(-2u)) - log1p(exp(-2u))``: no overflow, no
    rounding to log 1 for large |eta|), and below 0.5 by its Taylor series
    ``log 2 + eta^2/12 - 7 eta^4/1440 + 31 eta^6/90720 - 127 eta^8/4838400`` (the closed form cancels there).

    Args:
        logits: any shape, float.

    Returns:
        same shape, nats (>= log 2).
    """
    validate.floating(logits, "logits")
    a = logits.abs()
    far = a.clamp_min(_CB_TAYLOR_BELOW)  # keep the closed form away from 0, also in the unused branch
    closed = torch.log(far) - (torch.log(-torch.expm1(-far)) - torch.log1p(torch.exp(-far)))
    near = a.clamp_max(_CB_TAYLOR_BELOW).pow(2)
    series = math.log(2.0) + near / 12 - 7 * near.pow(2) / 1440 + 31 * near.pow(3) / 90720 - 127 * near.pow(4) / 4838400
    return torch.where(a < _CB_TAYLOR_BELOW, series, closed)


def continuous_bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) for a continuous Bernoulli decoder, per example, in nats, summed over pixels.

    The binary cross-entropy minus the log-normalizer: ``BCE(logits, x) - log C(sigmoid(logits))``
    (Loaiza-Ganem & Cunningham 2019). Unlike the grayscale BCE, this is the negative log of a
    density that integrates to 1 over [0, 1] for every logit, so it is a proper likelihood of
    grayscale pixels (a density: it can be negative).

    Args:
        logits: ``(N, ...)`` decoder outputs. x: same shape, in [0, 1].

    Returns:
        ``(N,)`` nats.
    """
    return bernoulli_nll(logits, x) - continuous_bernoulli_log_norm(logits).flatten(1).sum(dim=1)


def negative_elbo(
    decoder_output: Tensor,
    x: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    decoder_logvar: Tensor | float = 0.0,
    free_bits: float = 0.0,
) -> LossParts:
    """The negative ELBO, ``-E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I))``, per example.

    With one sample z ~ q(z|x) (the decoder output comes from it), the reconstruction term is a
    one-sample Monte Carlo estimate (Kingma & Welling 2014, eq. 10). ``beta = 1`` is the ELBO;
    other values give the beta-VAE objective (Higgins et al. 2017).

    Args:
        decoder_output: ``(N, ...)`` logits (Bernoulli) or means (Gaussian).
        x: same shape, in [0, 1].
        mu, logvar: ``(N, J)`` encoder outputs.
        beta: weight of the KL term (>= 0).
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        decoder_logvar: the Gaussian decoder's log-variance (ignored for Bernoulli).
        free_bits: lambda in nats per latent dimension (``free_bits_kl``, Kingma et al. 2016);
            0 (default) is the plain KL.

    Returns:
        ``LossParts(total, reconstruction, kl)``, each ``(N,)`` nats; ``total = reconstruction + beta * kl``
        (with free bits, ``beta * free_bits_kl`` instead; ``kl`` stays the true KL).
    """
    validate.positive_float(beta, "beta", allow_zero=True)
    recon = reconstruction_nll(decoder_output, x, likelihood, decoder_logvar)
    kl_per_dim = gaussian_kl_per_dim(mu, logvar)
    kl = kl_per_dim.sum(dim=1)
    kl_term = free_bits_kl(kl_per_dim, free_bits) if free_bits else kl
    return LossParts(recon + beta * kl_term, recon, kl)


LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")


def reconstruction_nll(decoder_output: Tensor, x: Tensor, likelihood: str, decoder_logvar: Tensor | float = 0.0) -> Tensor:
    """-log p(x|z) per example for the named decoder likelihood (see the two functions above)."""
    if likelihood == "bernoulli":
        return bernoulli_nll(decoder_output, x)
    if likelihood == "gaussian":
        return gaussian_nll(decoder_output, x, decoder_logvar)
    if likelihood == "continuous_bernoulli":
        return continuous_bernoulli_nll(decoder_output, x)
    raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")


# ---------------------------------------------------------------- log-densities and a Monte Carlo KL
# For priors whose KL against q(z|x) has no closed form (a mixture of Gaussians, notebook 08).

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension, in nats.

    ``-1/2 * sum_j (ln 2 pi + logvar_j + (z_j - mu_j)^2 / exp(logvar_j))``. The defaults give the
    standard normal N(0, I).

    Args:
        z: ``(..., J)`` points.
        mu, logvar: floats or tensors that broadcast against ``z`` (e.g. ``(N, J)`` against
            ``(S, N, J)`` samples, or ``(C, J)`` components against ``(N, 1, J)`` points).

    Returns:
        ``(...)``: the broadcast shape without its last dimension.

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
        ``(...)`` log-densities.

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
    log_weights = torch.log_softmax(logits, dim=0)                       # (C,)
    per_component = gaussian_log_prob(z.unsqueeze(-2), means, logvars)  # (..., C)
    return torch.logsumexp(per_component + log_weights, dim=-1)


def monte_carlo_kl(z: Tensor, mu: Tensor, logvar: Tensor, log_prior: Tensor) -> Tensor:
    """A one-sample Monte Carlo estimate of KL(q(z|x) || p(z)) per example, in nats:
    ``log q(z|x) - log p(z)`` at a sample ``z ~ q(z|x)``.

    Unbiased (its mean over samples is the KL) but noisy, and a single estimate can be negative.
    Used when the KL has no closed form, e.g. for a mixture prior (Kingma & Welling 2014, eq. 6
    with the KL inside the expectation).

    Args:
        z: ``(N, J)`` a sample of q(z|x) (reparameterized, so gradients reach mu and logvar).
        mu, logvar: ``(N, J)`` q(z|x)'s parameters.
        log_prior: ``(N,)`` log p(z) at that sample.

    Returns:
        ``(N,)`` nats.

    Raises:
        TypeError / ValueError: non-float tensors or shapes that differ (the message names the argument).
    """
    validate.floating(z, "z")
    validate.floating(log_prior, "log_prior")
    validate.same_shape(z, "z", mu, "mu")
    validate.same_shape(z, "z", logvar, "logvar")
    if tuple(log_prior.shape) != tuple(z.shape[:-1]):
        raise ValueError(f"log_prior: expected shape {tuple(z.shape[:-1])} (one per sample), got {tuple(log_prior.shape)}")
    return gaussian_log_prob(z, mu, logvar) - log_prior
