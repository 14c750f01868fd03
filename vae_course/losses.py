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


def gaussian_kl(mu: Tensor, logvar: Tensor, mu_p: Tensor | None = None, logvar_p: Tensor | None = None) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(mu_p, diag exp(logvar_p)) ) per example, in nats.

    With the default prior N(0, I) this is ``1/2 * sum_j (sigma_j^2 - ln sigma_j^2 - 1 + mu_j^2)``
    (Kingma & Welling 2014, Appendix B). In general, for diagonal Gaussians,
    ``1/2 * sum_j (ln s_p^2 - ln s^2 + (s^2 + (mu - mu_p)^2) / s_p^2 - 1)``.

    Args:
        mu, logvar: ``(N, D)`` mean and log-variance of q(z|x).
        mu_p, logvar_p: ``(N, D)`` or ``(D,)`` (broadcast) parameters of the prior; ``None``
            means 0 (the standard normal prior).

    Returns:
        ``(N,)`` KL divergence in nats, summed over the D latent dimensions (>= 0).

    Raises:
        TypeError: an argument is not a floating-point tensor.
        ValueError: ``mu`` is not 2-D or the shapes do not broadcast to ``mu``'s shape.
    """
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    if mu.dim() != 2:
        raise ValueError(f"mu: expected shape (N, D), got {tuple(mu.shape)}")
    validate.same_shape(mu, "mu", logvar, "logvar")
    logvar = clamp_logvar(logvar)
    if mu_p is None and logvar_p is None:
        # expm1(v) - v = exp(v) - v - 1 >= 0, computed without cancellation near v = 0 (in float32,
        # exp(v) - v - 1 can round below zero); the clamp removes what rounding is left.
        return 0.5 * ((torch.expm1(logvar) - logvar).clamp_min(0.0) + mu.pow(2)).sum(dim=1)
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
    return 0.5 * ((torch.expm1(diff) - diff).clamp_min(0.0) + (mu - mu_p).pow(2) * (-logvar_p).exp()).sum(dim=1)


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


def negative_elbo(
    decoder_output: Tensor,
    x: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    decoder_logvar: Tensor | float = 0.0,
) -> LossParts:
    """The negative ELBO, ``-E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I))``, per example.

    With one sample z ~ q(z|x) (the decoder output comes from it), the reconstruction term is a
    one-sample Monte Carlo estimate (Kingma & Welling 2014, eq. 10). ``beta = 1`` is the ELBO;
    other values give the beta-VAE objective (Higgins et al. 2017).

    Args:
        decoder_output: ``(N, ...)`` logits (Bernoulli) or means (Gaussian).
        x: same shape, in [0, 1].
        mu, logvar: ``(N, D)`` encoder outputs.
        beta: weight of the KL term (>= 0).
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        decoder_logvar: the Gaussian decoder's log-variance (ignored for Bernoulli).

    Returns:
        ``LossParts(total, reconstruction, kl)``, each ``(N,)`` nats; ``total = reconstruction + beta * kl``.
    """
    validate.positive_float(beta, "beta", allow_zero=True)
    recon = reconstruction_nll(decoder_output, x, likelihood, decoder_logvar)
    kl = gaussian_kl(mu, logvar)
    return LossParts(recon + beta * kl, recon, kl)


LIKELIHOODS = ("bernoulli", "gaussian")


def reconstruction_nll(decoder_output: Tensor, x: Tensor, likelihood: str, decoder_logvar: Tensor | float = 0.0) -> Tensor:
    """-log p(x|z) per example for the named decoder likelihood (see the two functions above)."""
    if likelihood == "bernoulli":
        return bernoulli_nll(decoder_output, x)
    if likelihood == "gaussian":
        return gaussian_nll(decoder_output, x, decoder_logvar)
    raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")


# ---------------------------------------------------------------- log-densities and a Monte Carlo KL
# For priors whose KL against q(z|x) has no closed form (a mixture of Gaussians, notebook 08).

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension, in nats.

    ``-1/2 * sum_j (ln 2 pi + logvar_j + (z_j - mu_j)^2 / exp(logvar_j))``. The defaults give the
    standard normal N(0, I).

    Args:
        z: ``(..., D)`` points.
        mu, logvar: floats or tensors that broadcast against ``z`` (e.g. ``(N, D)`` against
            ``(k, N, D)`` samples, or ``(K, D)`` components against ``(N, 1, D)`` points).

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
    """log p(z) of a mixture of K diagonal Gaussians, in nats:
    ``log sum_k pi_k N(z; m_k, diag exp(v_k))`` with ``pi = softmax(logits)``, computed as a
    ``logsumexp`` over components (no ``exp`` of a log-density, so no underflow far from the means).

    The mixture-of-Gaussians prior of Dilokthanakul et al. (2016) and Tomczak & Welling (2018,
    "VAE with a VampPrior", Sec. 2), whose VampPrior is a mixture with encoder-made components.

    Args:
        z: ``(..., D)`` points.
        means, logvars: ``(K, D)`` each component's mean and log-variance.
        logits: ``(K,)`` unnormalised log mixture weights.

    Returns:
        ``(...)`` log-densities.

    Raises:
        TypeError: a non-float tensor. ValueError: shapes that do not match (names the argument).
    """
    for value, name in ((z, "z"), (means, "means"), (logvars, "logvars"), (logits, "logits")):
        validate.floating(value, name)
    if means.dim() != 2:
        raise ValueError(f"means: expected shape (K, D), got {tuple(means.shape)}")
    validate.same_shape(means, "means", logvars, "logvars")
    if tuple(logits.shape) != (means.shape[0],):
        raise ValueError(f"logits: expected shape ({means.shape[0]},) (one per component), got {tuple(logits.shape)}")
    if z.dim() < 1 or z.shape[-1] != means.shape[1]:
        raise ValueError(f"z: expected shape (..., {means.shape[1]}) to match the means, got {tuple(z.shape)}")
    log_weights = torch.log_softmax(logits, dim=0)                       # (K,)
    per_component = gaussian_log_prob(z.unsqueeze(-2), means, logvars)  # (..., K)
    return torch.logsumexp(per_component + log_weights, dim=-1)


def monte_carlo_kl(z: Tensor, mu: Tensor, logvar: Tensor, log_prior: Tensor) -> Tensor:
    """A one-sample Monte Carlo estimate of KL(q(z|x) || p(z)) per example, in nats:
    ``log q(z|x) - log p(z)`` at a sample ``z ~ q(z|x)``.

    Unbiased (its mean over samples is the KL) but noisy, and a single estimate can be negative.
    Used when the KL has no closed form, e.g. for a mixture prior (Kingma & Welling 2014, eq. 6
    with the KL inside the expectation).

    Args:
        z: ``(N, D)`` a sample of q(z|x) (reparameterized, so gradients reach mu and logvar).
        mu, logvar: ``(N, D)`` q(z|x)'s parameters.
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
