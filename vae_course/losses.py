"""The VAE's loss: the decoder likelihoods (Bernoulli, Gaussian, continuous Bernoulli), free bits
and the negative ELBO, per example, in nats. The Gaussian's formulas (its density, the KL term)
live in ``vae_course.gaussian``.

Every function returns one number per example (shape ``(N,)``), summed over pixels or latent
dimensions, never averaged over them: averaging the reconstruction over 784 pixels while
summing the KL over latent dimensions silently weights the KL hundreds of times too strongly.

Sources: Kingma & Welling (2014), "Auto-Encoding Variational Bayes", eq. 3 (the ELBO) and
eq. 10 (its one-sample estimate); the likelihoods' sources are given with each function.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_course import gaussian, validate

__all__ = [
    "LIKELIHOODS",
    "LossParts",
    "bernoulli_nll",
    "categorical_entropy",
    "classification_nll",
    "continuous_bernoulli_log_norm",
    "continuous_bernoulli_nll",
    "free_bits_kl",
    "gaussian_nll",
    "labelled_negative_elbo",
    "negative_elbo",
    "reconstruction_nll",
    "unlabelled_negative_elbo",
]

class LossParts(NamedTuple):
    """A loss and its parts, each per example ``(N,)`` in nats (or floats after averaging).

    ``total = reconstruction + beta * kl`` (with free bits, ``beta * free_bits_kl``): the negative
    ELBO only when beta = 1 and there are no free bits."""

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


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
        kl_per_dim: ``(N, J)`` KL of each latent dimension (``gaussian.kl_per_dim``).
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


def bernoulli_nll(logits: Tensor, x: Tensor, *, x_checked: bool = False) -> Tensor:
    """-log p(x|z) for a Bernoulli decoder, per example, in nats (binary cross-entropy, summed).

    Computed from logits (never from sigmoid outputs: in float32 ``sigmoid(17.0) == 1.0``
    exactly, and ``log(1 - 1.0)`` is ``-inf``). For grayscale x in (0, 1) this is a cross-entropy,
    not the negative log of a normalized likelihood, but it is what VAEs on MNIST minimise.

    Args:
        logits: ``(N, ...)`` decoder outputs before the sigmoid.
        x: same shape, target pixel values in [0, 1].
        x_checked: True when the caller has already checked that x is in [0, 1] (``train.fit``
            checks its data once): skips that check, a pass over x that waits for the device.

    Returns:
        ``(N,)`` nats, summed over all pixels.

    Raises:
        TypeError / ValueError: non-float tensors, shapes that differ, x outside [0, 1].
    """
    validate.floating(logits, "logits")
    validate.floating(x, "x")
    validate.same_shape(logits, "logits", x, "x")
    if not x_checked and not bool(((x >= 0.0) & (x <= 1.0)).all()):  # also catches NaN, for which both comparisons are False
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
            i.e. unit variance), clamped to [-30, 30].

    Returns:
        ``(N,)`` nats (``gaussian.log_prob`` over the flattened pixels, negated).

    Raises:
        TypeError / ValueError: non-float tensors, or ``mean`` and ``x`` of different shapes.
    """
    validate.floating(mean, "mean")
    validate.floating(x, "x")
    validate.same_shape(mean, "mean", x, "x")
    if not isinstance(logvar, Tensor):
        logvar = torch.tensor(float(logvar), dtype=mean.dtype, device=mean.device)
    return -gaussian.log_prob(x.flatten(1), mean.flatten(1), logvar.expand_as(x).flatten(1))


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


def continuous_bernoulli_nll(logits: Tensor, x: Tensor, *, x_checked: bool = False) -> Tensor:
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
    return bernoulli_nll(logits, x, x_checked=x_checked) - continuous_bernoulli_log_norm(logits).flatten(1).sum(dim=1)


def negative_elbo(
    decoder_output: Tensor,
    x: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta: float = 1.0,
    likelihood: str = "bernoulli",
    decoder_logvar: Tensor | float = 0.0,
    free_bits: float = 0.0,
    *,
    x_checked: bool = False,
) -> LossParts:
    """The negative ELBO, ``-E_q[log p(x|z)] + beta * KL(q(z|x) || N(0, I))``, per example
    (the beta-weighted objective when beta != 1).

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
        x_checked: x is known to be in [0, 1] (``bernoulli_nll``).

    Returns:
        ``LossParts(total, reconstruction, kl)``, each ``(N,)`` nats; ``total = reconstruction + beta * kl``
        (with free bits, ``beta * free_bits_kl`` instead; ``kl`` stays the true KL).
    """
    validate.positive_float(beta, "beta", allow_zero=True)
    recon = reconstruction_nll(decoder_output, x, likelihood, decoder_logvar, x_checked=x_checked)
    kl_per_dim = gaussian.kl_per_dim(mu, logvar)
    kl = kl_per_dim.sum(dim=1)
    kl_term = free_bits_kl(kl_per_dim, free_bits) if free_bits else kl
    return LossParts(recon + beta * kl_term, recon, kl)


LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")


def reconstruction_nll(decoder_output: Tensor, x: Tensor, likelihood: str, decoder_logvar: Tensor | float = 0.0,
                       *, x_checked: bool = False) -> Tensor:
    """-log p(x|z) per example ``(N,)`` in nats for the named decoder likelihood: ``"bernoulli"``
    (``bernoulli_nll``), ``"gaussian"`` (``gaussian_nll``, with ``decoder_logvar``) or
    ``"continuous_bernoulli"`` (``continuous_bernoulli_nll``).

    Raises:
        ValueError: an unknown ``likelihood`` (and what the named function raises).
    """
    if likelihood == "bernoulli":
        return bernoulli_nll(decoder_output, x, x_checked=x_checked)
    if likelihood == "gaussian":
        return gaussian_nll(decoder_output, x, decoder_logvar)
    if likelihood == "continuous_bernoulli":
        return continuous_bernoulli_nll(decoder_output, x, x_checked=x_checked)
    raise ValueError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")


# ---------------------------------------------------------------- the semi-supervised VAE (M2)
# Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised Learning with Deep Generative Models",
# Sec. 3.1.2: the labelled bound (eq. 6), the unlabelled bound (eq. 7), the classification term (eq. 9).
# Uniform prior p(y) = 1/C over C classes, so -log p(y) = ln C.


def _logits_arg(logits, name: str = "logits") -> Tensor:
    validate.floating(logits, name)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"{name}: expected shape (N, C) with C >= 2 classes, got {tuple(logits.shape)}")
    return logits


def categorical_entropy(logits: Tensor) -> Tensor:
    """H(q(y|x)) = -sum_y q(y|x) log q(y|x) per example, in nats, from the classifier's logits.

    Args:
        logits: ``(N, C)`` unnormalised log-probabilities (``q = softmax(logits)``).

    Returns:
        ``(N,)`` nats, in ``[0, ln C]`` (0: certain; ln C: uniform).
    """
    log_q = torch.log_softmax(_logits_arg(logits), dim=1)
    return -(log_q.exp() * log_q).sum(dim=1)


def classification_nll(logits: Tensor, y: Tensor) -> Tensor:
    """-log q(y|x) per example, in nats (the cross-entropy): the term that M2's objective adds,
    weighted by alpha, for labelled digits (Kingma et al. 2014, eq. 9).

    Args:
        logits: ``(N, C)`` logits of q(y|x). y: ``(N,)`` int64 labels in ``[0, C)``.

    Returns:
        ``(N,)`` nats (>= 0).
    """
    _logits_arg(logits)
    validate.labels(y, "y", logits.shape[0], logits.shape[1])
    return F.cross_entropy(logits, y, reduction="none")


def labelled_negative_elbo(reconstruction: Tensor, kl_z: Tensor, num_classes: int, beta: float = 1.0) -> LossParts:
    """L(x, y), the negative of the labelled bound of M2 (Kingma et al. 2014, eq. 6), per example:

    ``log p(x, y) >= E_q(z|x,y)[log p(x|y,z) + log p(y) + log p(z) - log q(z|x,y)] = -L(x, y)``,

    so ``L(x, y) = -E_q[log p(x|y,z)] + KL(q(z|x,y) || p(z)) + ln C`` with the uniform p(y) = 1/C.

    Args:
        reconstruction: ``(N,)`` nats, -log p(x|y, z) at z ~ q(z|x, y) (a one-sample estimate).
        kl_z: ``(N,)`` nats, KL(q(z|x, y) || N(0, I)).
        num_classes: C (>= 2).
        beta: weight of the KL term (1: the bound).

    Returns:
        ``LossParts(total, reconstruction, kl)``, each ``(N,)`` nats; ``kl = kl_z + ln C`` is the KL
        of q(y, z|x) (the label known: a point mass) from p(y) p(z); ``total = reconstruction + beta * kl``.
    """
    validate.floating(reconstruction, "reconstruction")
    validate.floating(kl_z, "kl_z")
    validate.same_shape(reconstruction, "reconstruction", kl_z, "kl_z")
    num_classes = validate.integer(num_classes, "num_classes", low=2)
    beta = validate.positive_float(beta, "beta", allow_zero=True)
    kl = kl_z + math.log(num_classes)
    return LossParts(reconstruction + beta * kl, reconstruction, kl)


def unlabelled_negative_elbo(reconstruction: Tensor, kl_z: Tensor, logits: Tensor, beta: float = 1.0) -> LossParts:
    """U(x), the negative of the unlabelled bound of M2 (Kingma et al. 2014, eq. 7), per example,
    with the sum over the C labels done exactly:

    ``log p(x) >= sum_y q(y|x) (-L(x, y)) + H(q(y|x)) = -U(x)``,

    i.e. ``U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))``, with ``L(x, y)`` as in ``labelled_negative_elbo``.
    Split into parts: ``reconstruction = sum_y q(y|x) R_y`` and
    ``kl = sum_y q(y|x) KL_y + KL(q(y|x) || p(y))``, where ``KL(q(y|x) || p(y)) = ln C - H(q(y|x))``.

    Args:
        reconstruction: ``(N, C)`` nats, R_y = -log p(x|y, z_y) at z_y ~ q(z|x, y), one column per label.
        kl_z: ``(N, C)`` nats, KL_y = KL(q(z|x, y) || N(0, I)).
        logits: ``(N, C)`` logits of the classifier q(y|x).
        beta: weight of the KL term (1: the bound).

    Returns:
        ``LossParts(total, reconstruction, kl)``, each ``(N,)`` nats; ``total = reconstruction + beta * kl``.
    """
    _logits_arg(logits)
    for name, value in (("reconstruction", reconstruction), ("kl_z", kl_z)):
        validate.floating(value, name)
        validate.same_shape(value, name, logits, "logits")
    beta = validate.positive_float(beta, "beta", allow_zero=True)
    q = torch.softmax(logits, dim=1)
    kl_y = math.log(logits.shape[1]) - categorical_entropy(logits)      # KL(q(y|x) || uniform p(y))
    recon = (q * reconstruction).sum(dim=1)
    kl = (q * kl_z).sum(dim=1) + kl_y
    return LossParts(recon + beta * kl, recon, kl)
