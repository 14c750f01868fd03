"""The course's six models: Autoencoder, VAE, CVAE and MixturePriorVAE with MLP encoders and
decoders, ConvVAE with convolutional ones, and the semi-supervised M2VAE (notebook 09), a CVAE
with a classifier q(y|x). All answer the same interface (``_Base``).

Names follow pytorch/examples' VAE: ``encode``, ``reparameterize``, ``decode``. Decoders return
*logits* (Bernoulli likelihood) or *means* (Gaussian likelihood); the sigmoid is applied only
for display, in ``reconstruct`` and ``sample``.

Shapes: images ``(N, C, H, W)`` (MNIST: ``(N, 1, 28, 28)``), latents ``(N, latent_dim)``,
labels ``(N,)`` int64.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vae_course import gaussian, losses, validate

MNIST_SHAPE = (1, 28, 28)
DECODER_VARIANCES = ("fixed", "learned", "learned_per_pixel")
DECODER_LOGVAR_SPEED = 20.0  # see _Base.decoder_logvar


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ``activation`` between them
    (none after the last layer)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _check_config(image_shape, hidden_dims, latent_dim, likelihood):
    """The sizes as plain Python ints (NumPy or 0-d tensor sizes accepted: a checkpoint's
    configuration must load with weights_only=True), or ValueError naming the argument."""
    image_shape = validate.positive_ints(image_shape, "image_shape", "(1, 28, 28)")
    hidden_dims = validate.positive_ints(hidden_dims, "hidden_dims", "(400,)", min_len=0)
    latent_dim = validate.positive_int(latent_dim, "latent_dim")
    if likelihood not in losses.LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {losses.LIKELIHOODS}, got {likelihood!r}")
    return image_shape, hidden_dims, latent_dim


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def _no_free_bits(free_bits: float, why: str) -> float:
    """``free_bits`` (already checked >= 0) for a model whose KL has no closed form per latent
    dimension: only 0.0 is accepted, else ValueError naming ``free_bits`` and saying ``why``."""
    if free_bits != 0.0:
        raise ValueError(f"free_bits: {why} (expected 0.0), got {free_bits!r}")
    return free_bits


def _received(value) -> str:
    """How a received value is named in an error message."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"


class _Base(nn.Module):
    """What all the models share: their configuration, the one interface (below), input checks
    and display helpers.

    The interface. Every model answers ``encode(x, y=None)``, ``decode(z, y=None)``,
    ``reconstruct(x, y=None)`` and ``loss(x, y=None, *, beta=1.0, free_bits=0.0, x_in=None)``;
    the VAEs also ``sample(n, y=None, generator=None)``. ``y`` is the batch's labels: a model
    with ``num_classes == 0`` takes none and refuses one (ValueError naming ``y``); a CVAE needs
    them. Callers never ask which kind of model they hold: they pass the labels they have
    (or None) and the model checks them (``check_labels``).

    Inputs. Images are checked (shape ``(N, *image_shape)``, finite, in [0, 1]) and converted to
    the dtype of the model's weights (float64, float16 or bfloat16 images become float32 for a
    float32 model); a non-contiguous tensor is fine. An autograd graph on the images is kept by
    ``encode``, ``decode`` and ``loss``, so a learner can differentiate with respect to the input;
    ``reconstruct`` and ``sample`` run without a graph, and ``train.fit`` and ``evaluate`` detach.

    Internal methods ``_encode``, ``_decode`` and ``_loss`` do the same work without any check:
    ``train.fit`` checks its data and options once and then calls ``_loss`` at every step.
    """

    num_classes = 0  # labels the model takes: 0 = none (a CVAE sets its number of classes)

    def __init__(self, image_shape, hidden_dims, latent_dim, likelihood, activation):
        super().__init__()
        image_shape, hidden_dims, latent_dim = _check_config(image_shape, hidden_dims, latent_dim, likelihood)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {tuple(_ACTIVATIONS)}, got {activation!r}")
        self.image_shape, self.hidden_dims = image_shape, hidden_dims
        self.latent_dim, self.likelihood, self.activation = latent_dim, likelihood, activation
        self.input_dim = math.prod(image_shape)
        self.act = _ACTIVATIONS[activation]

    @property
    def config(self) -> dict:
        """The constructor arguments: enough to rebuild the model (checkpoints store it)."""
        cfg = dict(image_shape=list(self.image_shape), hidden_dims=list(self.hidden_dims),
                   latent_dim=self.latent_dim, likelihood=self.likelihood, activation=self.activation)
        if self.num_classes:
            cfg["num_classes"] = self.num_classes
        if getattr(self, "decoder_variance", "fixed") != "fixed":
            cfg["decoder_variance"] = self.decoder_variance
        return cfg

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (float32 unless the model was converted): inputs are converted to it."""
        return next(self.parameters()).dtype

    # ------------------------------------------------------------ checks (the public methods call them)

    def check_images(self, x, name: str = "x") -> Tensor:
        """``x`` checked (a float tensor ``(N, *image_shape)``, finite, in [0, 1]) and converted to
        the weights' dtype (an autograd graph is kept). Raises TypeError/ValueError naming ``name``."""
        validate.images(x, name, self.image_shape)
        return x.to(self.dtype)

    def check_latents(self, z, name: str = "z") -> Tensor:
        """``z`` checked (a float tensor ``(N, latent_dim)``) and converted to the weights' dtype."""
        validate.latents(z, name, self.latent_dim)
        return z.to(self.dtype)

    def check_labels(self, y, n: int, name: str = "y") -> Tensor | None:
        """The labels of a batch of ``n`` examples, checked: None for a model that takes no labels
        (one given is refused), an int64 tensor ``(n,)`` in ``[0, num_classes)`` for a CVAE (None
        refused). Raises TypeError/ValueError naming ``name``, what was expected and what was received."""
        model = type(self).__name__
        if not self.num_classes:
            if y is not None:
                raise ValueError(f"{name}: a {model} takes no labels (expected None), got {_received(y)}")
            return None
        if y is None:
            raise ValueError(f"{name}: a {model} needs labels (expected an int64 tensor of shape ({n},) "
                             f"with values in [0, {self.num_classes - 1}]), got None")
        validate.tensor(y, name)
        return validate.labels(y, name, n, self.num_classes)

    def check_loss_options(self, beta, free_bits) -> tuple[float, float]:
        """``beta`` and ``free_bits`` checked for this model (finite, >= 0); returned as floats."""
        return (validate.positive_float(beta, "beta", allow_zero=True),
                validate.positive_float(free_bits, "free_bits", allow_zero=True))

    def _with_labels(self, h: Tensor, y: Tensor | None) -> Tensor:
        """``h (N, F)`` with the one-hot labels appended ``(N, F + num_classes)``; ``h`` itself when
        the model takes no labels (``y`` is then None)."""
        if y is None:
            return h
        return torch.cat([h, nn.functional.one_hot(y, self.num_classes).to(h.dtype)], dim=1)

    # ------------------------------------------------------------ the interface

    def encode(self, x: Tensor, y: Tensor | None = None):
        """``(N, *image_shape)`` images in [0, 1] (and labels ``(N,)`` for a CVAE) -> the code:
        ``(N, latent_dim)`` for an Autoencoder, ``(mu, logvar)`` of q(z|x), each ``(N, latent_dim)``,
        for a VAE. Raises TypeError/ValueError on a wrong shape, dtype, NaN, values outside
        [0, 1] or labels the model does not take."""
        x = self.check_images(x)
        return self._encode(x, self.check_labels(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """``(N, latent_dim)`` codes (and labels ``(N,)`` for a CVAE) -> ``(N, *image_shape)``
        logits of p(x|z) (means for a Gaussian decoder)."""
        z = self.check_latents(z)
        return self._decode(z, self.check_labels(y, z.shape[0]))

    def loss(self, x: Tensor, y: Tensor | None = None, *, beta: float = 1.0, free_bits: float = 0.0,
             x_in: Tensor | None = None) -> losses.LossParts:
        """The training loss per example ``(N,)`` in nats, with its parts:
        ``LossParts(total, reconstruction, kl)``.

        Args:
            x: ``(N, *image_shape)`` images in [0, 1]: what the reconstruction is scored against.
            y: ``(N,)`` int64 labels, for a CVAE only.
            beta: weight of the KL term (1 = the negative ELBO; other values the beta-VAE objective).
            free_bits: lambda, nats per latent dimension (``losses.free_bits_kl``); 0 = plain KL.
            x_in: the input given to the encoder instead of ``x`` (e.g. a corrupted copy, for a
                denoising model); the loss still scores the reconstruction against ``x``.
        """
        x = self.check_images(x)
        x_in = None if x_in is None else self.check_images(x_in, "x_in")
        if x_in is not None and x_in.shape[0] != x.shape[0]:
            raise ValueError(f"x_in: expected {x.shape[0]} images (one per image of x), got {x_in.shape[0]}")
        beta, free_bits = self.check_loss_options(beta, free_bits)
        return self._loss(x, self.check_labels(y, x.shape[0]), beta, free_bits, x_in)

    def _decode(self, z: Tensor, y: Tensor | None) -> Tensor:
        return self._to_image(self.decoder(self._with_labels(z, y)))

    def _to_image(self, flat: Tensor) -> Tensor:
        return flat.view(-1, *self.image_shape)

    def to_pixels(self, decoder_output: Tensor) -> Tensor:
        """Decoder output -> displayable pixel values in [0, 1] (sigmoid of logits, or clamped means)."""
        if self.likelihood in ("bernoulli", "continuous_bernoulli"):
            # For the continuous Bernoulli this shows its shape parameter lambda, not its mean
            # (which is pulled towards 1/2); lambda is what the decoder's logits encode.
            return torch.sigmoid(decoder_output)
        return decoder_output.clamp(0.0, 1.0)

    @property
    def decoder_logvar(self) -> Tensor | None:
        """The Gaussian decoder's learned log-variance (shape ``()`` or ``image_shape``), or None
        when the variance is fixed. Stored as ``decoder_logvar_param = decoder_logvar /
        DECODER_LOGVAR_SPEED``: Adam moves every parameter by about ``lr`` per step, which suits
        weights but would take thousands of steps to bring a log-variance from 0 to its optimum
        (about -4 to -13 on dequantized MNIST); the factor is a learning rate 20x larger for it."""
        if getattr(self, "decoder_variance", "fixed") == "fixed":
            return None
        return DECODER_LOGVAR_SPEED * self.decoder_logvar_param

    def decoder_logvar_or_zero(self) -> Tensor | float:
        """The Gaussian decoder's log-variance: the learned one when the model has one
        (``decoder_variance="learned"`` or ``"learned_per_pixel"``), else 0.0 (unit variance)."""
        learned = self.decoder_logvar
        return 0.0 if learned is None else learned

    def reconstruction_nll(self, decoder_output: Tensor, x: Tensor, *, x_checked: bool = False) -> Tensor:
        """-log p(x|z) per example ``(N,)`` in nats under this model's decoder likelihood (with its
        learned log-variance, if any): ``losses.reconstruction_nll``. ``x_checked``: x is already
        known to be in [0, 1] (the ``_loss`` methods, whose callers checked it)."""
        return losses.reconstruction_nll(decoder_output, x, self.likelihood, self.decoder_logvar_or_zero(),
                                         x_checked=x_checked)


class Autoencoder(_Base):
    """A deterministic autoencoder: ``z = encoder(x)``, ``x_hat = decoder(z)``.

    With ``hidden_dims=()`` and ``likelihood="gaussian"`` both maps are linear and the model
    learns the same subspace as PCA (Baldi & Hornik 1989).

    Its ``loss`` is the reconstruction term alone (there is no KL): ``beta`` must stay 1 and
    ``free_bits`` 0 (anything else is refused, naming the argument, since it would change nothing).
    It takes no labels.

    Args:
        image_shape: shape of one image, default ``(1, 28, 28)``.
        hidden_dims: hidden layer widths of the encoder (the decoder mirrors them).
        latent_dim: size of the bottleneck code.
        likelihood: ``"bernoulli"`` (decoder returns logits, loss = BCE) or ``"gaussian"``
            (decoder returns pixel values, loss = squared error / 2 + const).
        activation: ``"relu"``, ``"tanh"`` or ``"elu"``.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=2,
                 likelihood="bernoulli", activation="relu"):
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation)
        self.encoder = mlp([self.input_dim, *self.hidden_dims, latent_dim], self.act)
        self.decoder = mlp([latent_dim, *reversed(self.hidden_dims), self.input_dim], self.act)

    def _encode(self, x: Tensor, y: Tensor | None) -> Tensor:
        return self.encoder(x.flatten(1))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x -> decoder output (logits or means), ``(N, *image_shape)``."""
        return self.decode(self.encode(x, y), y)

    def check_loss_options(self, beta, free_bits) -> tuple[float, float]:
        """An autoencoder has no KL term: ``beta`` must be 1 and ``free_bits`` 0."""
        beta, free_bits = super().check_loss_options(beta, free_bits)
        if beta != 1.0:
            raise ValueError(f"beta: an Autoencoder's loss has no KL term to weight (expected 1.0), got {beta!r}")
        if free_bits != 0.0:
            raise ValueError(f"free_bits: an Autoencoder's loss has no KL term (expected 0.0), got {free_bits!r}")
        return beta, free_bits

    def _loss(self, x, y, beta, free_bits, x_in) -> losses.LossParts:
        """Reconstruction loss per example ``(N,)`` in nats (the KL part is zero for an AE)."""
        out = self._decode(self._encode(x if x_in is None else x_in, y), y)
        recon = self.reconstruction_nll(out, x, x_checked=True)
        return losses.LossParts(recon, recon, torch.zeros_like(recon))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Images -> reconstructed images in [0, 1], same shape."""
        return self.to_pixels(self(x, y))


class VAE(_Base):
    """A variational autoencoder (Kingma & Welling 2014) with a Gaussian encoder q(z|x) =
    N(mu(x), diag exp(logvar(x))), the prior p(z) = N(0, I) and a Bernoulli (or Gaussian) decoder.

    Args: as ``Autoencoder``; ``latent_dim`` defaults to 20 and ``hidden_dims`` to ``(400,)``
    (the 784-400-20 model of pytorch/examples); ``likelihood`` may also be
    ``"continuous_bernoulli"`` (Loaiza-Ganem & Cunningham 2019).
        decoder_variance: for ``likelihood="gaussian"``: ``"fixed"`` (unit variance, the default),
            ``"learned"`` (one log-variance for all pixels, ``decoder_logvar`` of shape
            ``()``) or ``"learned_per_pixel"`` (shape ``image_shape``), trained with the rest.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", decoder_variance="fixed"):
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation)
        self._init_decoder_variance(decoder_variance)
        cond = self.num_classes  # 0 for the VAE, number of classes for the CVAE
        trunk = [self.input_dim + cond, *self.hidden_dims]
        # Hidden layers, each followed by the activation (the heads below read the last one).
        self.encoder = nn.Sequential(*mlp(trunk, self.act), self.act()) if self.hidden_dims else nn.Identity()
        self.mu_head = nn.Linear(trunk[-1], latent_dim)
        self.logvar_head = nn.Linear(trunk[-1], latent_dim)
        self.decoder = mlp([latent_dim + cond, *reversed(self.hidden_dims), self.input_dim], self.act)

    def _init_decoder_variance(self, decoder_variance: str) -> None:
        if decoder_variance not in DECODER_VARIANCES:
            raise ValueError(f"decoder_variance: expected one of {DECODER_VARIANCES}, got {decoder_variance!r}")
        if decoder_variance != "fixed" and self.likelihood != "gaussian":
            raise ValueError(f"decoder_variance: {decoder_variance!r} needs likelihood='gaussian', "
                             f"got likelihood={self.likelihood!r}")
        self.decoder_variance = decoder_variance
        if decoder_variance != "fixed":  # starts at log 1 = 0: unit variance, as the fixed decoder
            shape = () if decoder_variance == "learned" else self.image_shape
            self.decoder_logvar_param = nn.Parameter(torch.zeros(shape))

    def _encode(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._heads(self._with_labels(x.flatten(1), y))

    def _heads(self, h_in: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(h_in)
        return self.mu_head(h), self.logvar_head(h)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I), sigma = exp(logvar / 2): a sample of q(z|x)
        that is a differentiable function of mu and logvar (Kingma & Welling 2014, Sec. 2.4).
        ``(N, J), (N, J) -> (N, J)``."""
        return gaussian.reparameterize(mu, logvar)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x (and y for a CVAE) -> ``(logits, mu, logvar)`` using one sample z ~ q(z|x)."""
        x = self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        mu, logvar = self._encode(x, y)
        return self._decode(self.reparameterize(mu, logvar), y), mu, logvar

    def _loss(self, x, y, beta, free_bits, x_in) -> losses.LossParts:
        """Negative ELBO per example ``(N,)`` in nats when beta = 1 (else the beta-weighted
        objective), with its parts, from one sample of z. ``free_bits`` (nats per latent dimension)
        replaces the KL in ``total`` by ``losses.free_bits_kl``; the ``kl`` part is always the true KL."""
        mu, logvar = self._encode(x if x_in is None else x_in, y)
        logits = self._decode(self.reparameterize(mu, logvar), y)
        return losses.negative_elbo(logits, x, mu, logvar, beta=beta, likelihood=self.likelihood,
                                    decoder_logvar=self.decoder_logvar_or_zero(), free_bits=free_bits, x_checked=True)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Images (and labels for a CVAE) -> images in [0, 1] decoded from the posterior mean (no
        sampling noise), same shape."""
        x = self.check_images(x)
        y = self.check_labels(y, x.shape[0])
        mu, _ = self._encode(x, y)
        return self.to_pixels(self._decode(mu, y))

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) under the prior N(0, I), nats: ``(..., latent_dim) -> (...)``. Models with
        another prior override this; ``evaluate.importance_weighted_nll`` calls it."""
        return gaussian.log_prob(z)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` draws of z from the prior N(0, I) (drawn on the CPU with ``generator``,
        then moved to the model's device, so a seeded generator gives the same z on every device)."""
        validate.positive_int(n, "n")
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device, self.dtype)

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in [0, 1] decoded from z drawn from the prior: ``(n, *image_shape)``.

        ``y``: for a CVAE the class of every image (an int, NumPy integer or 0-d tensor) or of each
        (an ``(n,)`` int64 tensor); None for a model that takes no labels. Raises ValueError or
        TypeError naming ``n`` or ``y`` for a bad count or label."""
        n = validate.positive_int(n, "n")
        if y is not None and not (isinstance(y, Tensor) and y.dim() > 0):  # one class for every image (int, NumPy or 0-d tensor)
            y = torch.full((n,), validate.integer(y, "y"), dtype=torch.int64)
        y = self.check_labels(y, n)
        z = self.sample_prior(n, generator)
        return self.to_pixels(self._decode(z, None if y is None else y.to(self.device)))


class CVAE(VAE):
    """A conditional VAE (Sohn, Lee & Yan 2015): the label y enters encoder and decoder as a
    one-hot vector, so q(z|x, y) and p(x|z, y); the prior stays N(0, I).

    The same interface as ``VAE``; ``encode``, ``decode``, ``loss``, ``reconstruct`` and
    ``sample`` need the labels ``y`` (a ValueError naming ``y`` otherwise).

    Args: as ``VAE`` plus ``num_classes`` (10 for MNIST). Labels are int64 ``(N,)`` in
    ``[0, num_classes)``.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", num_classes=10, decoder_variance="fixed"):
        self.num_classes = validate.positive_int(num_classes, "num_classes")  # read by VAE.__init__ to widen the inputs
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation, decoder_variance)

    def one_hot(self, y: Tensor, n: int | None = None, name: str = "y") -> Tensor:
        """Labels ``(N,)`` int64 -> one-hot ``(N, num_classes)`` float (1 at each label's index).

        ``n``: the batch size the labels must match (checked; default ``len(y)``).
        Raises TypeError / ValueError for labels of the wrong dtype, length or range."""
        validate.tensor(y, name)
        n = y.shape[0] if n is None and y.dim() >= 1 else n
        validate.labels(y, name, n if n is not None else 0, self.num_classes)
        return nn.functional.one_hot(y, self.num_classes).to(self.dtype)


class MixturePriorVAE(VAE):
    """A VAE whose prior is a learned mixture of K diagonal Gaussians instead of N(0, I):
    ``p(z) = sum_k pi_k N(z; m_k, diag exp(v_k))``, with the means ``m``, log-variances ``v`` and
    mixture logits (``pi = softmax(logits)``) trained with the rest of the model.

    The KL between the Gaussian q(z|x) and a mixture has no closed form, so the loss uses the
    one-sample Monte Carlo estimate ``log q(z|x) - log p(z)`` at the same z that the decoder
    sees (``gaussian.monte_carlo_kl``); ``free_bits`` (a per-dimension closed-form KL) is refused.
    Mixture priors in VAEs: Dilokthanakul et al. (2016),
    "Deep Unsupervised Clustering with Gaussian Mixture VAEs"; Tomczak & Welling (2018), "VAE
    with a VampPrior" (Sec. 2, the MoG prior as the baseline of the VampPrior).

    Args: as ``VAE`` plus ``n_components`` (K >= 1). The means start at random points drawn from
    N(0, I) (torch's global RNG, like the weights), the variances at 1, the weights equal.
    With K = 1 and the component fixed at N(0, I) this is the plain VAE with a noisy KL.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", n_components=10):
        n_components = validate.positive_int(n_components, "n_components")
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation)
        self.n_components = n_components
        self.prior_means = nn.Parameter(torch.randn(n_components, latent_dim))
        self.prior_logvars = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.prior_logits = nn.Parameter(torch.zeros(n_components))

    @property
    def config(self) -> dict:
        return {**super().config, "n_components": self.n_components}

    @property
    def prior_weights(self) -> Tensor:
        """``(K,)`` mixture weights pi (softmax of the logits), summing to 1."""
        return torch.softmax(self.prior_logits, dim=0)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) under the mixture prior, nats: ``(..., latent_dim) -> (...)`` (a logsumexp over
        components, ``gaussian.mixture_log_prob``)."""
        validate.floating(z, "z")
        if z.dim() < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z: expected shape (..., {self.latent_dim}) (latent_dim={self.latent_dim}), got {tuple(z.shape)}")
        return gaussian.mixture_log_prob(z, self.prior_means, self.prior_logvars, self.prior_logits)

    def check_loss_options(self, beta, free_bits) -> tuple[float, float]:
        """``free_bits`` needs a closed-form KL per dimension, which a mixture prior lacks: it must be 0."""
        beta, free_bits = super().check_loss_options(beta, free_bits)
        return beta, _no_free_bits(free_bits, "a MixturePriorVAE's KL is a Monte Carlo estimate, not a sum over dimensions")

    def _loss(self, x, y, beta, free_bits, x_in) -> losses.LossParts:
        """reconstruction + beta * (one-sample Monte Carlo KL), per example ``(N,)`` in nats (the
        negative ELBO when beta = 1). The KL part of a single example can be negative; its mean is the KL."""
        mu, logvar = self._encode(x if x_in is None else x_in, y)
        z = self.reparameterize(mu, logvar)
        recon = self.reconstruction_nll(self._decode(z, y), x, x_checked=True)
        kl = gaussian.monte_carlo_kl(z, mu, logvar, self.prior_log_prob(z))
        return losses.LossParts(recon + beta * kl, recon, kl)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` draws of z from the mixture: a component k ~ pi, then z ~ N(m_k, diag exp(v_k))."""
        validate.positive_int(n, "n")
        k = torch.multinomial(self.prior_weights.cpu(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        means, logvars = self.prior_means.detach().cpu(), self.prior_logvars.detach().cpu()
        return gaussian.reparameterize(means[k], logvars[k], eps).to(self.device)


def _check_conv_image_shape(image_shape) -> None:
    ok = (isinstance(image_shape, (tuple, list)) and len(image_shape) == 3
          and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_shape)
          and image_shape[1] % 4 == 0 and image_shape[2] % 4 == 0)
    if not ok:
        raise ValueError("image_shape: expected (C, H, W) positive ints with H and W divisible by 4 "
                         f"(two stride-2 convolutions), such as (1, 28, 28), got {image_shape!r}")


class ConvVAE(VAE):
    """A convolutional VAE: the same Gaussian q(z|x), prior N(0, I) and Bernoulli (or Gaussian)
    decoder as ``VAE``, but the encoder is two stride-2 convolutions (28x28 -> 14x14 -> 7x7) and
    the decoder mirrors them with transposed convolutions (7x7 -> 14x14 -> 28x28).

    Convolutions share weights across positions, so the model knows that a stroke is a stroke
    wherever it is; the MLP must learn each position separately. Architecture in the spirit of
    the DCGAN-style VAEs of e.g. the TensorFlow CVAE tutorial, kept small for a CPU.

    Args:
        image_shape: ``(C, H, W)`` with H and W divisible by 4; default ``(1, 28, 28)``.
        channels: ``(c1, c2)`` feature maps of the two convolutions (the decoder mirrors them).
        latent_dim, likelihood, activation: as ``VAE``.

    Raises:
        ValueError: a bad ``image_shape`` or ``channels`` (the message names the argument).
    """

    def __init__(self, image_shape=MNIST_SHAPE, channels=(16, 32), latent_dim=20,
                 likelihood="bernoulli", activation="relu"):
        _check_conv_image_shape(image_shape)
        channels = validate.positive_ints(channels, "channels", example="(16, 32)", min_len=2)
        if len(channels) != 2:
            raise ValueError(f"channels: expected two integers >= 1 such as (16, 32), got {len(channels)}: {channels}")
        # Skip VAE.__init__ (it builds MLPs); _Base checks and stores the shared settings.
        _Base.__init__(self, image_shape, (), latent_dim, likelihood, activation)
        self.channels = tuple(channels)
        (c_in, h, w), (c1, c2) = self.image_shape, self.channels
        self.feature_shape = (c2, h // 4, w // 4)
        n_features = math.prod(self.feature_shape)
        # kernel 4, stride 2, padding 1 halves the size exactly (and the transpose doubles it).
        self.encoder = nn.Sequential(
            nn.Conv2d(c_in, c1, 4, stride=2, padding=1), self.act(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), self.act(),
            nn.Flatten())
        self.mu_head = nn.Linear(n_features, latent_dim)
        self.logvar_head = nn.Linear(n_features, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, n_features), self.act(),
            nn.Unflatten(1, self.feature_shape),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), self.act(),
            nn.ConvTranspose2d(c1, c_in, 4, stride=2, padding=1))

    @property
    def config(self) -> dict:
        return dict(image_shape=list(self.image_shape), channels=list(self.channels), latent_dim=self.latent_dim,
                    likelihood=self.likelihood, activation=self.activation)

    def _encode(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        return self._heads(x)  # (N, C, H, W): the convolutions read the image itself


UNLABELLED = -1  # the label of a digit whose label is hidden (M2VAE: summed over, not given)


class M2VAE(CVAE):
    """The semi-supervised VAE "M2" (Kingma, Rezende, Mohamed & Welling 2014, "Semi-Supervised
    Learning with Deep Generative Models", Sec. 2.2 and 3.1.2): the label is a latent variable
    when it is missing.

    Generative model (eq. 2): ``p(y)`` uniform over ``num_classes``, ``p(z) = N(0, I)``,
    ``p(x|y, z)`` the CVAE's decoder. Inference (eq. 4): the CVAE's encoder ``q(z|x, y)`` and a
    **classifier** ``q(y|x)``, a separate MLP ``D -> hidden_dims -> num_classes`` (its logits).

    Labels: ``(N,)`` int64 in ``[0, num_classes)`` for labelled digits and ``UNLABELLED`` (-1)
    for unlabelled ones; ``None`` means every digit is unlabelled. ``loss``, ``train.fit`` and
    ``evaluate`` take such labels; ``encode``, ``decode`` and ``forward`` need known labels
    (q(z|x, y) and p(x|y, z) are conditioned on one), ``reconstruct`` and ``sample`` take None
    (the classifier's guess, or y drawn from p(y)).

    The loss per example ``(N,)`` in nats (``LossParts(total, reconstruction, kl)``):

    * labelled: ``L(x, y) + alpha * (-log q(y|x))``, where ``-L(x, y) <= log p(x, y)`` is the
      labelled bound (eq. 6, ``losses.labelled_negative_elbo``) and the second term the
      classification loss of eq. 9;
    * unlabelled: ``U(x) = sum_y q(y|x) L(x, y) - H(q(y|x))``, ``-U(x) <= log p(x)`` (eq. 7,
      ``losses.unlabelled_negative_elbo``), the sum over the ten labels done exactly: one z
      sample for each label.

    ``kl`` is the KL of the whole posterior ``q(y, z|x)`` from the prior ``p(y) p(z)`` (for a
    labelled digit, q(y|x) is the known label: its KL from p(y) is ``ln num_classes``);
    ``total = reconstruction + beta * kl + alpha * (-log q(y|x))`` (labelled digits). With
    ``alpha = 0`` or no labelled digit, ``total`` is the negative ELBO (beta = 1). The mean over
    a batch of labelled and unlabelled digits is eq. 9 divided by the number of digits.

    Args: as ``CVAE`` (``num_classes`` >= 2; the classifier has the encoder's ``hidden_dims``),
    plus ``alpha`` (>= 0): the weight of ``-log q(y|x)`` on each labelled digit. The paper's
    objective sums the bounds over the data set and weighs the *mean* classification loss over
    labelled digits by ``0.1 N`` (Sec. 3.1.2, after eq. 9); per digit that is
    ``alpha = 0.1 N / N_labelled`` (``paper_alpha``). Implementations weigh each labelled digit by
    tens instead (Pyro's SS-VAE example: 46); notebook 09 uses 46.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", num_classes=10, alpha=1.0):
        num_classes = validate.integer(num_classes, "num_classes", low=2)
        alpha = validate.positive_float(alpha, "alpha", allow_zero=True)
        if not validate.positive_ints(hidden_dims, "hidden_dims", "(400,)", min_len=0):
            raise ValueError("hidden_dims: an M2VAE's encoder and classifier need at least one hidden layer "
                             f"(expected e.g. (400,)), got {hidden_dims!r}")
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation, num_classes)
        self.alpha = alpha
        self.classifier = mlp([self.input_dim, *self.hidden_dims, num_classes], self.act)

    @property
    def config(self) -> dict:
        return {**super().config, "alpha": self.alpha}

    @staticmethod
    def paper_alpha(n_examples: int, n_labelled: int) -> float:
        """``alpha`` per labelled digit matching the paper's ``alpha = 0.1 N`` (Kingma et al. 2014,
        Sec. 3.1.2), whose objective (eq. 9) sums the bounds over all N digits and adds ``0.1 N`` times
        the *mean* of ``-log q(y|x)`` over the labelled ones: ``0.1 * n_examples / n_labelled``."""
        n_examples = validate.positive_int(n_examples, "n_examples")
        n_labelled = validate.integer(n_labelled, "n_labelled", low=1, high=n_examples)
        return 0.1 * n_examples / n_labelled

    # ------------------------------------------------------------ labels

    def check_labels(self, y, n: int, name: str = "y") -> Tensor | None:
        """Labels of a batch of ``n`` digits for ``loss``, ``train.fit`` and ``evaluate``: None (all
        unlabelled) or an int64 tensor ``(n,)`` in ``[-1, num_classes)``, -1 (``UNLABELLED``) marking
        an unlabelled digit. Raises TypeError/ValueError naming ``name``."""
        if y is None:
            return None
        validate.tensor(y, name)
        if y.dtype != torch.int64:
            raise TypeError(f"{name}: expected class indices of dtype torch.int64 (-1: unlabelled), got {y.dtype}")
        if tuple(y.shape) != (n,):
            raise ValueError(f"{name}: expected shape ({n},) (one label per image), got {tuple(y.shape)}")
        if n and (int(y.min()) < UNLABELLED or int(y.max()) >= self.num_classes):
            raise ValueError(f"{name}: expected labels in [0, {self.num_classes - 1}] or {UNLABELLED} (unlabelled), "
                             f"got values in [{int(y.min())}, {int(y.max())}]")
        return y

    def check_known_labels(self, y, n: int, name: str = "y") -> Tensor:
        """Labels that q(z|x, y) and p(x|y, z) can be conditioned on: an int64 tensor ``(n,)`` in
        ``[0, num_classes)`` (None and -1 refused, naming ``name``)."""
        return CVAE.check_labels(self, y, n, name)

    def check_loss_options(self, beta, free_bits) -> tuple[float, float]:
        """``free_bits`` would need the KL per latent dimension of every label's q(z|x, y): it must be 0."""
        beta, free_bits = super().check_loss_options(beta, free_bits)
        return beta, _no_free_bits(free_bits, "an M2VAE sums its KL over labels, not per latent dimension")

    # ------------------------------------------------------------ the classifier q(y|x)

    def _class_logits(self, x: Tensor) -> Tensor:
        return self.classifier(x.flatten(1))

    def class_logits(self, x: Tensor) -> Tensor:
        """``(N, *image_shape)`` images -> ``(N, num_classes)`` logits of q(y|x)
        (``softmax`` gives the probabilities). Keeps the autograd graph."""
        return self._class_logits(self.check_images(x))

    @torch.no_grad()
    def classify(self, x: Tensor) -> Tensor:
        """``(N, *image_shape)`` images -> ``(N,)`` int64: the most probable label under q(y|x)."""
        return self.class_logits(x).argmax(dim=1)

    # ------------------------------------------------------------ the interface, with known labels

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Images ``(N, *image_shape)`` and known labels ``(N,)`` -> ``(mu, logvar)`` of q(z|x, y),
        each ``(N, latent_dim)``. (For q(y|x): ``class_logits``.)"""
        x = self.check_images(x)
        return self._encode(x, self.check_known_labels(y, x.shape[0]))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Codes ``(N, latent_dim)`` and known labels ``(N,)`` -> ``(N, *image_shape)`` logits of p(x|y, z)."""
        z = self.check_latents(z)
        return self._decode(z, self.check_known_labels(y, z.shape[0]))

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """x and known labels -> ``(logits, mu, logvar)`` using one sample z ~ q(z|x, y)."""
        x = self.check_images(x)
        y = self.check_known_labels(y, x.shape[0])
        mu, logvar = self._encode(x, y)
        return self._decode(self.reparameterize(mu, logvar), y), mu, logvar

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Images -> images in [0, 1] decoded from the posterior mean of q(z|x, y), with the given
        labels, or (``y=None``) with the classifier's most probable label."""
        x = self.check_images(x)
        y = self._class_logits(x).argmax(dim=1) if y is None else self.check_known_labels(y, x.shape[0])
        mu, _ = self._encode(x, y)
        return self.to_pixels(self._decode(mu, y))

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in [0, 1]: y (an int, an ``(n,)`` int64 tensor, or None: drawn from the uniform
        p(y)), then z ~ N(0, I), decoded. ``(n, *image_shape)``."""
        n = validate.positive_int(n, "n")
        if y is None:
            y = torch.randint(0, self.num_classes, (n,), generator=generator)
        elif not (isinstance(y, Tensor) and y.dim() > 0):  # one class for every image (int, NumPy or 0-d tensor)
            y = torch.full((n,), validate.integer(y, "y"), dtype=torch.int64)
        y = self.check_known_labels(y, n)
        z = self.sample_prior(n, generator)
        return self.to_pixels(self._decode(z, y.to(self.device)))

    # ------------------------------------------------------------ every label at once

    def _encode_all_labels(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, ...)`` images -> ``(mu, logvar)`` of q(z|x, y) for every label y, each
        ``(N, num_classes, latent_dim)``. The encoder's first layer is linear in ``[x, onehot(y)]``:
        ``W [x; e_y] + b = (W_x x + b) + W_y e_y``, so x's part is computed once for all labels."""
        first = self.encoder[0]
        d = self.input_dim
        h_x = nn.functional.linear(x.flatten(1), first.weight[:, :d], first.bias)    # (N, H)
        h = h_x.unsqueeze(1) + first.weight[:, d:].T.unsqueeze(0)                     # (N, C, H): + column y of W_y
        h = self.encoder[1:](h)                                                      # the rest of the encoder
        return self.mu_head(h), self.logvar_head(h)

    def _labelled_parts(self, x: Tensor, x_enc: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, kl_z)``, each ``(N,)`` nats, with one z ~ q(z|x, y)."""
        mu, logvar = self._encode(x_enc, y)
        decoded = self._decode(self.reparameterize(mu, logvar), y)
        return self.reconstruction_nll(decoded, x, x_checked=True), gaussian.kl(mu, logvar)

    def _all_label_parts(self, x: Tensor, x_enc: Tensor) -> tuple[Tensor, Tensor]:
        """``(reconstruction, kl_z)`` for every label, each ``(N, num_classes)`` nats, with one z
        ~ q(z|x, y) for each label y."""
        n, c = x.shape[0], self.num_classes
        mu, logvar = self._encode_all_labels(x_enc)                               # (N, C, J)
        z = self.reparameterize(mu, logvar)
        labels = torch.arange(c, device=x.device).repeat(n)                       # (N*C,): 0, 1, ..., C-1, 0, 1, ...
        decoded = self._decode(z.reshape(n * c, -1), labels)                      # (N*C, *image_shape)
        recon = self.reconstruction_nll(decoded, x.repeat_interleave(c, dim=0), x_checked=True).view(n, c)
        kl_z = gaussian.kl(mu.reshape(n * c, -1), logvar.reshape(n * c, -1)).view(n, c)
        return recon, kl_z

    def _loss(self, x, y, beta, free_bits, x_in) -> losses.LossParts:
        """Per example ``(N,)`` nats: ``L(x, y) + alpha * (-log q(y|x))`` for labelled digits, ``U(x)``
        for unlabelled ones (see the class docstring), with their reconstruction and KL parts."""
        x_enc = x if x_in is None else x_in
        logits = self._class_logits(x_enc)                                        # (N, C) of q(y|x)
        n = x.shape[0]
        known = torch.zeros(n, dtype=torch.bool, device=x.device) if y is None else y >= 0
        total, recon, kl = (torch.zeros(n, dtype=x.dtype, device=x.device) for _ in range(3))
        if known.any():
            y_known = y[known]
            recon_l, kl_z = self._labelled_parts(x[known], x_enc[known], y_known)
            parts = losses.labelled_negative_elbo(recon_l, kl_z, self.num_classes, beta=beta)
            classification = losses.classification_nll(logits[known], y_known)
            total[known] = parts.total + self.alpha * classification
            recon[known], kl[known] = parts.reconstruction, parts.kl
        if not known.all():
            unknown = ~known
            recon_u, kl_z = self._all_label_parts(x[unknown], x_enc[unknown])
            parts = losses.unlabelled_negative_elbo(recon_u, kl_z, logits[unknown], beta=beta)
            total[unknown], recon[unknown], kl[unknown] = parts
        return losses.LossParts(total, recon, kl)


MODELS = {cls.__name__: cls for cls in (Autoencoder, VAE, CVAE, MixturePriorVAE, ConvVAE)}
