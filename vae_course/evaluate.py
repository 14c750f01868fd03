"""Held-out evaluation in nats per example: the negative ELBO, the importance-weighted
estimate of -log p(x), and reconstruction errors.

Evaluation draws random z; each function runs inside ``evaluating(model, seed)`` (eval mode, no
gradients, torch's RNG forked and seeded, the model's mode restored afterwards), so the same model
and data give the same numbers every time and the caller's RNG is left as it was. Images of any
float dtype are converted to the model's (``model.check_images``) and never carry a graph here;
labels are passed to the model, which refuses those it does not take.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vae_course import gaussian, losses, stats, validate
from vae_course.models import M2VAE, VAE


class Estimate(NamedTuple):
    """A mean over examples, in nats per example, with its standard error."""

    mean: float
    stderr: float


def _batches(model, images, labels, batch_size):
    """``(x, y)`` batches of ``batch_size`` images on the model's device, in its dtype, detached;
    ``y`` is None for a model that takes no labels. Everything is checked here, before the first
    batch (the model refuses labels it does not take and asks for those it needs)."""
    images = model.check_images(images, "images").detach()
    labels = model.check_labels(labels, images.shape[0], "labels")
    batch_size = validate.positive_int(batch_size, "batch_size")
    device = model.device
    return ((images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device) if labels is not None else None)
            for i in range(0, images.shape[0], batch_size))


@contextmanager
def evaluating(model: nn.Module, seed: int | None = None):
    """Within the block: ``model`` in eval mode, no gradients, and torch's random number generator
    forked (seeded with ``seed`` when given), so evaluation draws the same z every time and leaves
    the caller's RNG as it was. On exit the model's train/eval mode is restored."""
    seed = validate.seed(seed) if seed is not None else None  # before the fork: a refused seed opens nothing
    was_training = model.training
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        model.eval()
        try:
            yield model
        finally:
            model.train(was_training)


@torch.no_grad()
def loss_parts(model: nn.Module, images: Tensor, labels: Tensor | None = None, beta: float = 1.0,
               batch_size: int = 1000, seed: int = 0) -> losses.LossParts:
    """Mean loss parts over ``images`` as floats, nats per example: ``LossParts(total,
    reconstruction, kl)`` of the model's training loss, one z sample per image. ``total`` is
    ``reconstruction + beta * kl``: the negative ELBO when ``beta = 1`` (the default); for an
    Autoencoder, the reconstruction loss (beta must be 1)."""
    beta, _ = model.check_loss_options(beta, 0.0)
    batches = _batches(model, images, labels, batch_size)
    sums = torch.zeros(3, dtype=torch.float64)
    with evaluating(model, seed):
        for x, y in batches:
            parts = model._loss(x, y, beta, 0.0, None)  # checked above, once
            sums += torch.stack([p.double().sum().cpu() for p in parts])
    means = (sums / images.shape[0]).tolist()
    return losses.LossParts(*means)


@torch.no_grad()
def negative_elbo_per_example(model: VAE, images: Tensor, labels: Tensor | None = None, batch_size: int = 1000,
                              seed: int = 0) -> Tensor:
    """The negative ELBO of each image, nats: a ``(N,)`` float64 tensor on the CPU (one z sample per
    image, seeded like ``negative_elbo``, whose ``total`` is this tensor's mean).

    Use it to compare two models on the same test digits with ``paired_difference``.

    Raises:
        TypeError: ``model`` is not a VAE (or a subclass). ValueError: bad images, labels or batch_size.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a variational model (VAE, CVAE, MixturePriorVAE or ConvVAE), got {type(model).__name__}")
    batches = _batches(model, images, labels, batch_size)
    with evaluating(model, seed):
        values = [model._loss(x, y, 1.0, 0.0, None).total.double().cpu() for x, y in batches]
    return torch.cat(values)


def paired_difference(a: Tensor, b: Tensor) -> Estimate:
    """Mean of ``a - b`` over examples with the standard error of that mean, for two models scored on
    the *same* examples (e.g. nats per test digit of model A and of model B).

    Pairing removes the digit-to-digit spread that both scores share (an easy digit is easy for
    both), so the standard error of the difference is usually far smaller than either model's own:
    two overlapping error bars can still hide a clear difference, and only ``|mean| > 2 stderr``
    supports a claim that one model is better.

    Args:
        a, b: ``(N,)`` tensors, N >= 2, same shape, finite.

    Returns:
        ``Estimate(mean, stderr)`` of ``a - b`` (in the units of a and b).

    Raises:
        TypeError / ValueError: ``a`` or ``b`` is not a 1-D tensor of N >= 2 finite values, or their
        shapes differ.
    """
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor of shape (N,), got {type(t).__name__}")
        if t.dim() != 1 or t.shape[0] < 2:
            raise ValueError(f"{name}: expected shape (N,) with N >= 2, got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}: expected finite values, got non-finite ones")
    if a.shape != b.shape:
        raise ValueError(f"b: expected the shape of a, {tuple(a.shape)} (the same examples), got {tuple(b.shape)}")
    return _estimate(a.double().cpu() - b.double().cpu())


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
        raise TypeError(f"model: expected a variational model (VAE, CVAE, MixturePriorVAE or ConvVAE), got {type(model).__name__}")
    return loss_parts(model, images, labels, beta=1.0, batch_size=batch_size, seed=seed)


# Decoder rows (samples x images) per forward pass in importance_weights: about 30 MB of logits
# for MNIST, so memory stays bounded whatever k (k = 5000 on a batch of 100 digits included).
DECODE_ROWS = 10_000


@torch.no_grad()
def importance_weights(model: VAE, x: Tensor, y: Tensor | None, k: int, chunk_rows: int | None = None) -> Tensor:
    """``(k, N)`` log importance weights log p(x, z_i) - log q(z_i|x), z_i ~ q(z|x).

    The noise of all k samples is drawn at once (``(k, N, J)``: the draws never depend on the
    chunking); the latents are then formed, decoded and scored ``chunk_rows // N`` samples at a
    time, so memory beyond that noise is bounded by ``chunk_rows`` decoder rows whatever k. The
    result does not depend on the chunk size (up to float rounding). ``chunk_rows`` defaults to
    ``DECODE_ROWS``.
    """
    chunk_rows = validate.positive_int(DECODE_ROWS if chunk_rows is None else chunk_rows, "chunk_rows")
    mu, logvar = model.encode(x, y)
    eps = torch.randn(k, *mu.shape, device=mu.device)  # (k, N, J)
    n = x.shape[0]
    step = max(1, chunk_rows // n)
    log_w = []
    for start in range(0, k, step):
        z = gaussian.reparameterize(mu, logvar, eps[start:start + step])  # (c, N, J)
        c = z.shape[0]
        flat_z = z.reshape(-1, model.latent_dim)
        logits = model.decode(flat_z, None if y is None else y.repeat(c))  # each sample's labels
        x_rep = x.repeat(c, *[1] * (x.dim() - 1))
        log_px_z = -model.reconstruction_nll(logits, x_rep).view(c, n)  # learned variance too
        log_pz = model.prior_log_prob(z)  # N(0, I), or the model's own prior (e.g. a mixture)
        log_qz = gaussian.log_prob(z, mu, logvar)
        log_w.append(log_px_z + log_pz - log_qz)
    return torch.cat(log_w)


@torch.no_grad()
def importance_weighted_nll(model: VAE, images: Tensor, k: int = 100, labels: Tensor | None = None,
                            batch_size: int = 100, seed: int = 0) -> Estimate:
    """The k-sample importance-weighted estimate of -log p(x), nats per example (Burda, Grosse &
    Salakhutdinov 2016, eq. 8): ``-log (1/k) sum_i p(x, z_i) / q(z_i|x)``, z_i ~ q(z|x).

    Its expectation is an upper bound on -log p(x) that tightens as k grows; k = 1 is the
    negative ELBO. The returned ``stderr`` is the standard error of the mean over images.
    (``importance_weighted_nlls`` with ``ks=(k,)``.)

    Raises:
        TypeError: ``model`` is not a VAE (or a subclass). ValueError: bad images, labels, k or batch_size.
    """
    k = validate.positive_int(k, "k")
    return importance_weighted_nlls(model, images, (k,), labels, batch_size, seed)[k]


def importance_weighted_nlls(model: VAE, images: Tensor, ks=(1, 5, 50), labels: Tensor | None = None,
                             batch_size: int = 100, seed: int = 0) -> dict[int, Estimate]:
    """Importance-weighted estimates of -log p(x) for several k, from the **same** samples.

    For each image, S = max(ks) samples z^(1)..z^(S) ~ q(z|x) are drawn once. The IWAE-k estimate
    (Burda et al. 2016, eq. 8) is computed on each of the S/k disjoint groups of k consecutive
    samples and averaged over the groups: an unbiased estimate of the k-sample bound, with
    less noise than one group. Because each k divides the next, every group of the larger k is a
    union of groups of the smaller one, and by Jensen's inequality (log of a mean >= mean of
    logs) the estimates are ordered for every image, not only in expectation:
    ``IWAE-1 >= IWAE-k >= IWAE-K`` in nats (ELBO <= IWAE-k bound <= IWAE-K bound on log p(x)).
    k = 1 is the K-sample Monte Carlo negative ELBO.

    Args:
        model: a trained ``VAE`` or ``CVAE``.
        images: ``(N, *model.image_shape)`` in [0, 1]. labels: ``(N,)`` int64 (CVAE only).
        ks: increasing positive ints, each dividing the next (e.g. ``(1, 5, 50, 500)``).
        batch_size, seed: images per forward pass (K * batch_size decoder passes at once); RNG seed.

    Returns:
        ``{k: Estimate(mean, stderr)}``, nats per example; stderr over images.

    Raises:
        TypeError: ``model`` is not a VAE (or a subclass). ValueError: bad images, labels, ks or batch_size.
    """
    return {k: _estimate(v) for k, v in importance_weighted_nlls_per_example(model, images, ks, labels,
                                                                              batch_size, seed).items()}


@torch.no_grad()
def importance_weighted_nlls_per_example(model: VAE, images: Tensor, ks=(1, 5, 50), labels: Tensor | None = None,
                                         batch_size: int = 100, seed: int = 0) -> dict[int, Tensor]:
    """The importance-weighted estimates of ``importance_weighted_nlls``, one per image: ``{k: (N,)}``
    float64 tensors on the CPU, nats (their means and standard errors are what
    ``importance_weighted_nlls`` returns; same samples, same seed).

    Use them to compare two estimates or two models on the same images with ``paired_difference``
    (e.g. the gap between IWAE-1 and IWAE-K, measured per image on the same samples).

    Raises:
        TypeError: ``model`` is not a VAE (or a subclass). ValueError: bad images, labels, ks or batch_size.
    """
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a variational model (VAE, CVAE, MixturePriorVAE or ConvVAE), got {type(model).__name__}")
    ks = tuple(validate.positive_int(k, f"ks[{i}]") for i, k in enumerate(ks)) if isinstance(ks, (tuple, list)) else ks
    if (not isinstance(ks, tuple) or not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks)
            or any(b <= a or b % a for a, b in zip(ks, ks[1:]))):
        raise ValueError(f"ks: expected increasing positive ints, each dividing the next (e.g. (1, 5, 50)), got {ks!r}")
    total_samples = ks[-1]  # S: every k is a group size within these
    batches = _batches(model, images, labels, batch_size)
    values = {k: [] for k in ks}
    with evaluating(model, seed):
        for x, y in batches:
            log_w = importance_weights(model, x, y, total_samples).double()  # (S, n)
            for k in ks:
                groups = log_w.view(total_samples // k, k, -1)  # (S/k, k, n): disjoint groups of k samples
                values[k].append(-(torch.logsumexp(groups, dim=1) - math.log(k)).mean(dim=0).cpu())
    return {k: torch.cat(v) for k, v in values.items()}


def _estimate(per_example: Tensor) -> Estimate:
    """Mean and standard error of the mean of ``(N,)`` values."""
    mean, stderr = stats.mean_and_stderr(per_example)
    return Estimate(float(mean), float(stderr))


def bits_per_dim(nats, dims: int):
    """Nats per example -> bits per dimension: ``nats / (dims * ln 2)``.

    The usual unit for comparing likelihoods across image sizes (e.g. 784 pixels for MNIST).
    Works on a float, a tensor or an ``Estimate`` (both its mean and its standard error scale).

    Raises:
        ValueError: ``dims`` is not a positive int.
    """
    validate.positive_int(dims, "dims")
    scale = 1.0 / (dims * math.log(2.0))
    if isinstance(nats, Estimate):
        return Estimate(nats.mean * scale, nats.stderr * scale)
    return nats * scale


def _posterior_params(model: VAE, images: Tensor, labels: Tensor | None, batch_size: int) -> tuple[Tensor, Tensor]:
    """``(mu, logvar)`` of q(z|x) for all images, each ``(N, J)`` on the CPU."""
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a variational model (VAE, CVAE, MixturePriorVAE or ConvVAE), got {type(model).__name__}")
    batches = _batches(model, images, labels, batch_size)
    mus, logvars = [], []
    with evaluating(model):
        for x, y in batches:
            mu, logvar = model._encode(x, y)
            mus.append(mu.cpu()), logvars.append(logvar.cpu())
    return torch.cat(mus), torch.cat(logvars)


def rate_per_example(model: VAE, images: Tensor, labels: Tensor | None = None, batch_size: int = 1000) -> Tensor:
    """The rate of each image: the closed-form KL(q(z|x) || N(0, I)) in nats, no sampling (Kingma &
    Welling 2014, Appendix B). A ``(N,)`` float64 tensor on the CPU; with ``negative_elbo_per_example``
    it gives each image's distortion (negative ELBO minus rate), for paired comparisons of a β sweep.

    Raises:
        TypeError: ``model`` is not a VAE (or a subclass). ValueError: bad images, labels or batch_size.
    """
    mu, logvar = _posterior_params(model, images, labels, batch_size)
    return gaussian.kl(mu, logvar).double()


def kl_per_dimension(model: VAE, images: Tensor, labels: Tensor | None = None, batch_size: int = 1000) -> Tensor:
    """The KL(q(z|x) || N(0, I)) of each latent dimension, averaged over ``images``: ``(J,)`` nats.

    Closed form (``gaussian.kl_per_dim``), no sampling; the entries sum to the mean KL
    (the rate). A dimension with KL near 0 has q(z_j|x) = N(0, 1) for every x: it carries no
    information about x (a collapsed, inactive dimension).
    """
    mu, logvar = _posterior_params(model, images, labels, batch_size)
    return gaussian.kl_per_dim(mu.double(), logvar.double()).mean(dim=0).float()


class ActiveUnits(NamedTuple):
    """Active latent dimensions (Burda, Grosse & Salakhutdinov 2016, Sec. 5.2)."""

    count: int
    variance: Tensor  # (J,): Cov_x(E_q[z_j]) of each dimension
    threshold: float


def active_units(model: VAE, images: Tensor, labels: Tensor | None = None, threshold: float = 0.01,
                 batch_size: int = 1000) -> ActiveUnits:
    """Count the active latent dimensions: those whose posterior mean varies with x.

    Burda et al. (2016), Sec. 5.2: unit u is active when ``A_u = Cov_x(E_{q(u|x)}[u]) > 0.01``;
    ``E_q[u]`` is the encoder's mean mu_u(x), and the variance is taken over ``images``
    (population variance). An inactive unit's q(u|x) does not depend on x, so the decoder cannot
    use it.

    Returns:
        ``ActiveUnits(count, variance (J,), threshold)``.
    """
    threshold = validate.positive_float(threshold, "threshold")
    mu, _ = _posterior_params(model, images, labels, batch_size)
    variance = mu.double().var(dim=0, unbiased=False).float()
    return ActiveUnits(int((variance > threshold).sum()), variance, threshold)


class RateDistortion(NamedTuple):
    """Rate and distortion of a VAE on a dataset, nats per example (Alemi et al. 2018)."""

    rate: float        # mean KL(q(z|x) || p(z))
    distortion: float  # mean -E_q[log p(x|z)]


def rate_distortion(model: VAE, images: Tensor, labels: Tensor | None = None, batch_size: int = 1000,
                    seed: int = 0) -> RateDistortion:
    """Rate R = mean KL(q(z|x) || p(z)) and distortion D = mean -E_q[log p(x|z)] over ``images``,
    nats per example (Alemi et al. 2018, "Fixing a Broken ELBO", Sec. 2); rate + distortion is the negative
    ELBO. The KL is in closed form; the distortion uses one z ~ q(z|x) per image (seeded)."""
    if not isinstance(model, VAE):
        raise TypeError(f"model: expected a variational model (VAE, CVAE, MixturePriorVAE or ConvVAE), got {type(model).__name__}")
    parts = loss_parts(model, images, labels, beta=1.0, batch_size=batch_size, seed=seed)
    return RateDistortion(parts.kl, parts.reconstruction)


@torch.no_grad()
def reconstruction_error(model: nn.Module, images: Tensor, labels: Tensor | None = None,
                         batch_size: int = 1000) -> Tensor:
    """Per-image mean squared error between ``images`` and their reconstructions, ``(N,)`` (pixel
    units squared, in [0, 1]). Used as an anomaly score."""
    errors = []
    for x, y in _batches(model, images, labels, batch_size):
        recon = model.reconstruct(x, y)
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
    neighbors = validate.positive_int(neighbors, "neighbors")
    return KNeighborsClassifier(n_neighbors=neighbors, weights="distance").fit(images.flatten(1).cpu().numpy(), labels.cpu().numpy())


def classifier_accuracy(classifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` that ``classifier`` assigns to ``labels`` (in [0, 1])."""
    validate.labels(labels, "labels", images.shape[0], int(labels.max()) + 1)
    predicted = classifier.predict(images.flatten(1).detach().cpu().numpy())
    return float((predicted == labels.cpu().numpy()).mean())


@torch.no_grad()
def marginal_kl(model: VAE, images: Tensor, n_samples: int = 5000, batch_size: int = 250, seed: int = 0) -> Estimate:
    """KL(q(z) || p(z)) between the aggregate posterior ``q(z) = (1/N) sum_n q(z|x_n)`` of
    ``images`` and the model's prior (``model.prior_log_prob``), in nats, by Monte Carlo.

    The ELBO's KL term, averaged over the data, splits into two parts (Hoffman & Johnson 2016,
    "ELBO surgery", eq. 2): ``E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z))``: the
    information the codes carry about the digits, plus how far the codes' overall distribution is
    from the prior. Only the second part is wasted; a learned prior can shrink it.

    Estimator: draw ``z_s ~ q(z)`` (an image at random, then ``z ~ q(z|x)``); then
    ``log q(z_s) = logsumexp_n log q(z_s|x_n) - log N`` over all N images, and the estimate is the
    mean of ``log q(z_s) - log p(z_s)``. With finite N this slightly overstates how concentrated
    q(z) is; the same N for two models compares them fairly.

    Args:
        model: an unconditional ``VAE`` (or subclass). images: ``(N, *model.image_shape)``.
        n_samples: Monte Carlo samples of z. batch_size: samples scored at a time (memory:
            ``batch_size * N * latent_dim`` floats).

    Returns:
        ``Estimate(mean, stderr)`` in nats (the stderr is over the Monte Carlo samples).

    Raises:
        TypeError: ``model`` is not an unconditional VAE. ValueError: bad images or counts.
    """
    if not isinstance(model, VAE) or model.num_classes:  # q(z) is over images alone
        raise TypeError(f"model: expected an unconditional VAE, got {type(model).__name__}")
    batches = _batches(model, images, None, 1000)
    validate.positive_int(n_samples, "n_samples")
    validate.positive_int(batch_size, "batch_size")
    with evaluating(model, seed):
        mu, logvar = [], []
        for x, y in batches:
            m, v = model._encode(x, y)
            mu.append(m), logvar.append(gaussian.clamp_logvar(v))
        mu, logvar = torch.cat(mu).double(), torch.cat(logvar).double()
        n = mu.shape[0]
        pick = torch.randint(0, n, (n_samples,), device=mu.device)
        eps = torch.randn(n_samples, model.latent_dim, device=mu.device, dtype=mu.dtype)
        z = gaussian.reparameterize(mu[pick], logvar[pick], eps)  # z ~ q(z|x_i) for a random image i
        values = []
        for i in range(0, n_samples, batch_size):
            zb = z[i:i + batch_size]
            log_q = torch.logsumexp(gaussian.log_prob(zb.unsqueeze(1), mu, logvar), dim=1) - math.log(n)
            log_p = model.prior_log_prob(zb).double()
            values.append((log_q - log_p).cpu())
    values = torch.cat(values)
    return _estimate(values)


def label_share(codes: Tensor, labels: Tensor) -> float:
    """The share of the codes' spread that the labels explain: eta squared, the between-class sum of
    squares over the total sum of squares, summed over latent dimensions.

    ``sum_c N_c ||m_c - m||^2 / sum_n ||z_n - m||^2`` for class means ``m_c`` (``N_c`` codes each) and
    overall mean ``m``. 0: every class has the same mean (no grouping by label); 1: every code sits on
    its class mean (each class collapsed onto one point). Always in [0, 1].

    Args:
        codes: ``(N, J)`` latent codes (e.g. posterior means), finite, not all equal.
        labels: ``(N,)`` integer class labels.

    Returns:
        A float in [0, 1] (no unit).

    Raises:
        TypeError / ValueError: ``codes`` is not an (N, J) finite tensor with N >= 2 and some spread,
        or ``labels`` is not an (N,) integer tensor.
    """
    if not isinstance(codes, Tensor) or codes.dim() != 2 or codes.shape[0] < 2:
        shape = tuple(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ValueError(f"codes: expected an (N, J) tensor with N >= 2, got {shape}")
    if not torch.isfinite(codes).all():
        raise ValueError("codes: expected finite values, got non-finite ones")
    if (not isinstance(labels, Tensor) or labels.shape != codes.shape[:1]
            or labels.dtype.is_floating_point or labels.dtype == torch.bool):
        shape = (tuple(labels.shape), labels.dtype) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected an integer tensor of shape ({codes.shape[0]},), got {shape}")
    z, y = codes.detach().double().cpu(), labels.cpu()
    centred = z - z.mean(0)
    total = centred.pow(2).sum()
    if total <= 0:
        raise ValueError("codes: expected some spread, got all codes equal")
    between = sum((y == c).sum() * centred[y == c].mean(0).pow(2).sum() for c in y.unique())
    return float(between / total)


@torch.no_grad()
def correct_per_example(model: M2VAE, images: Tensor, labels: Tensor, batch_size: int = 1000) -> Tensor:
    """1.0 where the classifier q(y|x) of an ``M2VAE`` gives its highest probability to the true
    label, else 0.0: a ``(N,)`` float64 tensor on the CPU. Its mean is ``accuracy``; compare two
    classifiers on the same digits with ``paired_difference``.

    Args:
        model: an ``M2VAE``. images: ``(N, *model.image_shape)`` in [0, 1].
        labels: ``(N,)`` int64, the true labels in ``[0, num_classes)``.

    Raises:
        TypeError: ``model`` is not an M2VAE. ValueError / TypeError: bad images, labels or batch_size.
    """
    if not isinstance(model, M2VAE):
        raise TypeError(f"model: expected an M2VAE (a model with a classifier q(y|x)), got {type(model).__name__}")
    images = model.check_images(images, "images").detach()
    labels = model.check_known_labels(labels, images.shape[0], "labels")
    batch_size = validate.positive_int(batch_size, "batch_size")
    correct = []
    with evaluating(model):
        for i in range(0, images.shape[0], batch_size):
            predicted = model._class_logits(images[i:i + batch_size].to(model.device)).argmax(dim=1).cpu()
            correct.append((predicted == labels[i:i + batch_size].cpu()).double())
    return torch.cat(correct)


def accuracy(model: M2VAE, images: Tensor, labels: Tensor, batch_size: int = 1000) -> Estimate:
    """Test accuracy of an ``M2VAE``'s classifier q(y|x) (the most probable label), with its standard
    error: ``Estimate(mean, stderr)``, fractions in [0, 1].

    The standard error is that of a mean of N values 0 or 1 (``stats.mean_and_stderr``):
    ``sqrt(a (1 - a) / (N - 1))`` for accuracy a, about 0.02 for a = 0.75 on 500 digits, 0.004 on
    10,000. (Error rate = 1 - mean, with the same standard error.)

    Raises:
        TypeError: ``model`` is not an M2VAE. ValueError / TypeError: bad images, labels or batch_size.
    """
    return _estimate(correct_per_example(model, images, labels, batch_size))


class ExactBounds(NamedTuple):
    """Per-example values, nats, computed by quadrature (no sampling): ``elbo`` is ELBO(x) = -U(x)
    of M2 (Kingma et al. 2014, eq. 7), ``log_likelihood`` is log p(x); ``elbo <= log_likelihood``."""

    elbo: Tensor
    log_likelihood: Tensor


@torch.no_grad()
def m2_exact_by_quadrature(model: M2VAE, images: Tensor, points: int = 4001, limit: float = 12.0) -> ExactBounds:
    """ELBO(x) and log p(x) of an ``M2VAE`` with a one-dimensional latent z, both without sampling:
    the sum over labels is exact and every integral over z is a trapezoid rule on ``points``
    equally spaced values in ``[-limit, limit]``, in float64 (a copy of the model).

    ``log p(x) = log sum_y p(y) integral p(x|y,z) p(z) dz``;
    ``ELBO(x) = sum_y q(y|x) (E_q(z|x,y)[log p(x|y,z)] - KL(q(z|x,y) || p(z)) + log p(y)) + H(q(y|x))``
    (eq. 7, the KL in closed form). Used to check the bound on a model small enough to integrate.

    Args:
        model: an ``M2VAE`` with ``latent_dim == 1``. images: ``(N, *model.image_shape)`` in [0, 1].
        points: grid points (>= 3). limit: half-width of the grid in z (q and p must be negligible beyond).

    Returns:
        ``ExactBounds(elbo, log_likelihood)``, each ``(N,)`` float64 on the CPU.

    Raises:
        TypeError: ``model`` is not an M2VAE. ValueError: ``latent_dim != 1``, bad images, points or limit.
    """
    import copy

    if not isinstance(model, M2VAE):
        raise TypeError(f"model: expected an M2VAE, got {type(model).__name__}")
    if model.latent_dim != 1:
        raise ValueError(f"model: expected latent_dim 1 (a one-dimensional integral over z), got {model.latent_dim}")
    points = validate.integer(points, "points", low=3)
    limit = validate.positive_float(limit, "limit")
    x = model.check_images(images, "images").detach().cpu().double()
    exact = copy.deepcopy(model).cpu().double().eval()
    n, c = x.shape[0], exact.num_classes
    z = torch.linspace(-limit, limit, points, dtype=torch.float64)           # (P,)
    dz = z[1] - z[0]
    weights = torch.full_like(z, float(dz))
    weights[0] = weights[-1] = float(dz) / 2                                  # the trapezoid rule
    log_pz = gaussian.log_prob(z.unsqueeze(1))                                # (P,)
    log_py = -math.log(c)
    log_q_y = torch.log_softmax(exact._class_logits(x), dim=1)                # (N, C)
    log_joint, elbo_terms = [], []
    for y in range(c):
        labels = torch.full((n,), y, dtype=torch.int64)
        logits = exact._decode(z.repeat(n).unsqueeze(1), labels.repeat_interleave(points))   # (N*P, ...)
        log_px_z = -exact.reconstruction_nll(logits, x.repeat_interleave(points, dim=0)).view(n, points)
        log_joint.append(log_py + torch.logsumexp(log_px_z + log_pz + weights.log(), dim=1))  # log p(x, y)
        mu, logvar = exact._encode(x, labels)                                               # (N, 1)
        q_z = (gaussian.log_prob(z.view(1, points, 1), mu.unsqueeze(1), logvar.unsqueeze(1))).exp()  # (N, P)
        expected_log_px_z = (q_z * log_px_z * weights).sum(dim=1)
        elbo_terms.append(expected_log_px_z - gaussian.kl(mu, logvar) + log_py)          # -L(x, y)
    elbo_y = torch.stack(elbo_terms, dim=1)                                              # (N, C)
    q_y = log_q_y.exp()
    elbo = (q_y * elbo_y).sum(dim=1) - (q_y * log_q_y).sum(dim=1)                        # + H(q(y|x))
    log_likelihood = torch.logsumexp(torch.stack(log_joint, dim=1), dim=1)
    return ExactBounds(elbo, log_likelihood)
