"""Held-out evaluation in nats per example: the negative ELBO, the importance-weighted
estimate of -log p(x), and reconstruction errors.

Evaluation draws random z; each function seeds its own RNG (``seed``) without disturbing the
global one, so the same model and data give the same numbers every time.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vae_course import losses, validate
from vae_course.models import VAE


class Estimate(NamedTuple):
    """A mean over examples, in nats per example, with its standard error."""

    mean: float
    stderr: float


def _batches(model, images, labels, batch_size):
    validate.images(images, "images", model.image_shape)
    if model.conditional:
        if labels is None:
            raise ValueError("labels: a conditional model needs labels, got None")
        validate.labels(labels, "labels", images.shape[0], model.num_classes)
    validate.positive_int(batch_size, "batch_size")
    device = model.device
    for i in range(0, images.shape[0], batch_size):
        y = labels[i:i + batch_size].to(device) if labels is not None and model.conditional else None
        yield images[i:i + batch_size].to(device), y


def _seeded(seed: int, device: torch.device):
    devices = [device] if device.type == "cuda" else []
    rng = torch.random.fork_rng(devices=devices)
    rng.__enter__()
    torch.manual_seed(seed)
    return rng


@torch.no_grad()
def loss_parts(model: nn.Module, images: Tensor, labels: Tensor | None = None, beta: float = 1.0,
               batch_size: int = 1000, seed: int = 0) -> losses.LossParts:
    """Mean loss parts over ``images`` as floats, nats per example: ``LossParts(total,
    reconstruction, kl)``; for a VAE/CVAE ``total`` is the negative ELBO (beta = 1), one z sample
    per image."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64)
    rng = _seeded(seed, model.device)
    try:
        for x, y in _batches(model, images, labels, batch_size):
            parts = model.loss(x, y, beta=beta)
            sums += torch.stack([p.double().sum().cpu() for p in parts])
    finally:
        rng.__exit__(None, None, None)
        model.train(was_training)
    means = (sums / images.shape[0]).tolist()
    return losses.LossParts(*means)


def negative_elbo(model: VAE, images: Tensor, labels: Tensor | None = None, batch_size: int = 1000,
                  seed: int = 0) -> losses.LossParts:
    """Test-set negative ELBO in nats per example (mean), with its reconstruction and KL parts.

    An upper bound on -log p(x) (Kingma & Welling 2014, eq. 3); for a CVAE, on -log p(x|y).

    Args:
        model: a trained ``VAE`` or ``CVAE``.
        images: ``(N, *model.image_shape)`` in [0, 1]. labels: ``(N,)`` int64 (CVAE only).

    Returns:
        ``LossParts(total, reconstruction, kl)`` of floats.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a VAE or CVAE, got {type(model).__name__}")
    return loss_parts(model, images, labels, beta=1.0, batch_size=batch_size, seed=seed)


@torch.no_grad()
def importance_weights(model: VAE, x: Tensor, y: Tensor | None, k: int) -> Tensor:
    """``(k, N)`` log importance weights log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x)."""
    mu, logvar = model.encode(x, y) if model.conditional else model.encode(x)
    logvar = losses.clamp_logvar(logvar)
    z = mu + (0.5 * logvar).exp() * torch.randn(k, *mu.shape, device=mu.device)  # (k, N, D)
    flat_z = z.reshape(-1, model.latent_dim)
    if model.conditional:
        logits = model.decode(flat_z, y.repeat(k))
    else:
        logits = model.decode(flat_z)
    log_px_z = -losses.reconstruction_nll(logits, x.repeat(k, *[1] * (x.dim() - 1)), model.likelihood).view(k, -1)
    log_pz = model.prior_log_prob(z)  # N(0, I), or the model's own prior (e.g. a mixture)
    log_qz = losses.gaussian_log_prob(z, mu, logvar)
    return log_px_z + log_pz - log_qz


@torch.no_grad()
def importance_weighted_nll(model: VAE, images: Tensor, k: int = 100, labels: Tensor | None = None,
                            batch_size: int = 100, seed: int = 0) -> Estimate:
    """The k-sample importance-weighted estimate of -log p(x), nats per example (Burda, Grosse &
    Salakhutdinov 2016, eq. 8): ``-log (1/k) sum_i p(x, z_i) / q(z_i|x)``, z_i ~ q(z|x).

    Its expectation is an upper bound on -log p(x) that tightens as k grows; k = 1 is the
    negative ELBO. The returned ``stderr`` is the standard error of the mean over images.

    Raises:
        TypeError: ``model`` is not a VAE/CVAE. ValueError: bad images, labels, k or batch_size.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a VAE or CVAE, got {type(model).__name__}")
    validate.positive_int(k, "k")
    was_training = model.training
    model.eval()
    values = []
    rng = _seeded(seed, model.device)
    try:
        for x, y in _batches(model, images, labels, batch_size):
            log_w = importance_weights(model, x, y, k)
            values.append(-(torch.logsumexp(log_w.double(), dim=0) - math.log(k)).cpu())
    finally:
        rng.__exit__(None, None, None)
        model.train(was_training)
    per_example = torch.cat(values)
    stderr = float(per_example.std() / math.sqrt(len(per_example))) if len(per_example) > 1 else float("nan")
    return Estimate(float(per_example.mean()), stderr)


@torch.no_grad()
def reconstruction_error(model: nn.Module, images: Tensor, labels: Tensor | None = None,
                         batch_size: int = 1000) -> Tensor:
    """Per-image mean squared error between ``images`` and their reconstructions, ``(N,)`` (pixel
    units squared, in [0, 1]). Used as an anomaly score."""
    errors = []
    for x, y in _batches(model, images, labels, batch_size):
        recon = model.reconstruct(x, y) if model.conditional else model.reconstruct(x)
        errors.append((recon - x).pow(2).flatten(1).mean(1).cpu())
    return torch.cat(errors)


def train_digit_classifier(images: Tensor, labels: Tensor, neighbors: int = 5):
    """A small digit classifier used to check that generated digits are recognisable: nearest
    neighbours on pixels (scikit-learn; ``neighbors`` of them, weighted by closeness, so
    ``predict_proba`` gives graded confidences). About 95 % accurate on MNIST test digits and
    fitted in under a second (a logistic regression takes seconds and is less accurate here).

    Args: images ``(N, C, H, W)`` in [0, 1]; labels ``(N,)`` int64; ``neighbors``: how many.
    Returns the fitted classifier; use ``classifier_accuracy`` on it.
    """
    from sklearn.neighbors import KNeighborsClassifier

    validate.floating(images, "images")
    validate.images(images, "images", tuple(images.shape[1:]))
    validate.labels(labels, "labels", images.shape[0], int(labels.max()) + 1)
    validate.positive_int(neighbors, "neighbors")
    return KNeighborsClassifier(n_neighbors=neighbors, weights="distance").fit(images.flatten(1).cpu().numpy(), labels.cpu().numpy())


def classifier_accuracy(classifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` that ``classifier`` assigns to ``labels`` (in [0, 1])."""
    validate.labels(labels, "labels", images.shape[0], int(labels.max()) + 1)
    predicted = classifier.predict(images.flatten(1).detach().cpu().numpy())
    return float((predicted == labels.cpu().numpy()).mean())
