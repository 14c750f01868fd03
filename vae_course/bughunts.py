"""Bug hunts: five small, broken pieces of VAE code, each a mistake found in real VAE code.

Every function here runs without an error and returns numbers of the right shape. That is what
makes these bugs dangerous: the model still trains, and only the results are wrong. Each
docstring says what you would *observe*; the exercises at the end of the notebooks ask you to
find the bug and write the fixed version, which ``vae_course.checks`` compares with the course's
formulas (those of ``vae_course.gaussian`` and ``vae_course.losses``).

=================================  ========  ===============================================
function                           notebook  symptom
=================================  ========  ===============================================
``bernoulli_log_likelihood``       02        a "log-likelihood" that is far below 0 even for
                                             a perfect decoder
``negative_elbo_mean_over_pixels`` 03        posterior collapse: the KL goes to 0, blurry
                                             reconstructions
``gaussian_kl_logvar_as_logstd``   03        a trained encoder's σ² about twice the right
                                             one for small σ², a KL reported too large
``reparameterize_with_variance``   04        samples too narrow for small σ, too wide for
                                             large σ
``test_loss_at_posterior_mean``    04        a test loss below the negative ELBO and the
                                             importance-weighted estimate: no bound
=================================  ========  ===============================================

Do not use these functions for anything but the exercises: they are wrong on purpose.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vae_course import losses


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """"log p(x|z)" of grayscale images under a Bernoulli decoder, per example (BROKEN, notebook 02).

    Args: ``logits`` ``(N, 1, 28, 28)`` decoder outputs; ``x`` the same shape, gray values in [0, 1].
    Returns: ``(N,)`` nats, reported as a log-likelihood.

    Symptom: for an image whose pixels are all 0.5, no decoder gets this number anywhere near 0, the
    value a log-probability of a perfectly predicted outcome takes; on MNIST digits even a decoder
    that predicts every pixel exactly stays tens of nats below 0. Nor is it the log of a density of
    gray images: the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), whose density integrates
    to 1 on [0, 1], scores the same logits more than 500 nats higher per digit. Reported as "the
    test log-likelihood", it is comparable neither with a log-likelihood of binarized digits nor with
    a log-density of gray ones (exercise 02.3 in notebook 02 measures both defects).
    """
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def negative_elbo_mean_over_pixels(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """The negative ELBO per example (BROKEN, notebook 03).

    Args: ``logits``, ``x`` ``(N, 1, 28, 28)``; ``mu``, ``logvar`` ``(N, J)`` encoder outputs (J latent
    dimensions).
    Returns: ``(N,)``, reconstruction + KL.

    Symptom: trained with this loss, a VAE reconstructs every digit as the same blurry blob (close to
    the average digit), its KL falls to almost 0 with every latent dimension switched off (posterior
    collapse), and its number looks small but is not in nats per digit. Times D = 784 pixels it is
    the beta-VAE objective with beta = 784, and Adam ignores the factor 1/784: a nat of KL costs as
    much as 784 nats of reconstruction, far more than a latent code saves on MNIST (a few nats per
    nat). It even ranks a collapsed VAE above a good one. Notebook 03, bug hunt 03.3, measures this.
    (Written as ``F.binary_cross_entropy(...)`` with the default ``reduction="mean"``, this bug is
    common in published code.)
    """
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).mean(dim=1)
    kl = 0.5 * (logvar.exp() - logvar - 1 + mu.pow(2)).sum(dim=1)
    return reconstruction + kl


def gaussian_kl_logvar_as_logstd(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL( N(mu, diag exp(logvar)) || N(0, I) ) per example (BROKEN, notebook 03).

    Args: ``mu``, ``logvar`` ``(N, J)``: the encoder's mean and log-variance ln σ² (J latent dimensions).
    Returns: ``(N,)`` nats.

    Symptom: correct when logvar = 0 and in mu, but it is the right KL at twice the log-variance,
    ½(σ⁴ - ln σ⁴ - 1 + μ²): for a narrow q it charges about -ln σ² per dimension instead of
    -½ ln σ², twice the pull towards σ = 1. Against a reconstruction cost that grows by a·σ²/2 nats
    as q widens, the right KL settles at σ² = 1/(1 + a) and this one at σ² = (√(a² + 16) - a)/4:
    up to about 2.13 times the right variance, tending to 2 as σ² -> 0 (σ about √2 too wide, not
    off by a square root); an unused dimension (a = 0) gets σ² = 1 from both. The KL it reports is
    two to three times the true KL of that q (for right σ² from 0.1 down to 0.001). Notebook 03,
    bug hunt 03.4, shows it on one dimension and on a trained VAE (about twice the variance where
    the right σ² is below 0.1).
    """
    sigma = logvar.exp()
    return 0.5 * (sigma.pow(2) - 2 * sigma.log() - 1 + mu.pow(2)).sum(dim=1)


def reparameterize_with_variance(mu: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """A sample z of N(mu, diag exp(logvar)) from standard normal noise ``eps`` (BROKEN, notebook 04).

    Args: ``mu``, ``logvar``, ``eps``: ``(N, J)`` (J latent dimensions).
    Returns: ``(N, J)`` samples.

    Symptom: the samples' spread does not match the encoder's σ: too narrow where σ < 1 (a trained
    encoder's σ), too wide where σ > 1, right only at σ = 1 (an untrained encoder's σ are all close
    to 1, so a test at initialization passes). A Monte Carlo estimate of the KL from these samples
    misses the closed form of ``gaussian.kl`` by ½ Σ_j (σ_j² - 1)² nats in expectation: the
    error grows the further σ is from 1. Notebook 04, bug hunt 04.2, measures both.
    """
    return mu + logvar.exp() * eps


def test_loss_at_posterior_mean(model, x: Tensor) -> Tensor:
    """Test-set negative ELBO per example, in nats (BROKEN, notebook 04).

    Args: ``model`` a trained ``VAE``; ``x`` ``(N, 1, 28, 28)`` test images.
    Returns: ``(N,)`` nats.

    Symptom: the "test negative ELBO" comes out lower than the same model's negative ELBO with
    sampled z, and even below its importance-weighted estimate of -log p(x). It is no bound: on a
    linear-Gaussian model with the exact posterior (where the ELBO equals log p(x)), decoding z = mu
    gives tr(W Σ W^T) / (2 s²) nats less than the exact -log p(x), for every x (W the decoder's
    weights, s² its noise variance, Σ the posterior covariance). Notebook 04, bug hunt 04.3,
    measures both.
    """
    with torch.no_grad():
        mu, logvar = model.encode(x)
        return losses.negative_elbo(model.decode(mu), x, mu, logvar).total
