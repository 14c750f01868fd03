"""Autoencoder, VAE and conditional VAE with MLP encoders and decoders.

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

from vae_course import losses, validate

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
    if not (isinstance(image_shape, (tuple, list)) and len(image_shape) >= 1
            and all(isinstance(s, int) and s > 0 for s in image_shape)):
        raise ValueError(f"image_shape: expected a tuple of positive ints such as (1, 28, 28), got {image_shape!r}")
    if not (isinstance(hidden_dims, (tuple, list))
            and all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden_dims)):
        raise ValueError(f"hidden_dims: expected a sequence of positive ints, got {hidden_dims!r}")
    validate.positive_int(latent_dim, "latent_dim")
    if likelihood not in losses.LIKELIHOODS:
        raise ValueError(f"likelihood: expected one of {losses.LIKELIHOODS}, got {likelihood!r}")


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


class _Base(nn.Module):
    """What all three models share: their configuration, input checks and display helpers."""

    conditional = False
    num_classes = 0

    def __init__(self, image_shape, hidden_dims, latent_dim, likelihood, activation):
        super().__init__()
        _check_config(image_shape, hidden_dims, latent_dim, likelihood)  # before tuple(): 400 is not iterable
        image_shape, hidden_dims = tuple(image_shape), tuple(hidden_dims)
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
        if self.conditional:
            cfg["num_classes"] = self.num_classes
        if getattr(self, "decoder_variance", "fixed") != "fixed":
            cfg["decoder_variance"] = self.decoder_variance
        return cfg

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_x(self, x: Tensor, name: str = "x") -> Tensor:
        return validate.images(x, name, self.image_shape)

    def _check_z(self, z: Tensor, name: str = "z") -> Tensor:
        return validate.latents(z, name, self.latent_dim)

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

    def reconstruction_nll(self, decoder_output: Tensor, x: Tensor) -> Tensor:
        """-log p(x|z) per example ``(N,)`` in nats under this model's decoder likelihood (with its
        learned log-variance, if any): ``losses.reconstruction_nll``."""
        return losses.reconstruction_nll(decoder_output, x, self.likelihood, self.decoder_logvar_or_zero())


class Autoencoder(_Base):
    """A deterministic autoencoder: ``z = encoder(x)``, ``x_hat = decoder(z)``.

    With ``hidden_dims=()`` and ``likelihood="gaussian"`` both maps are linear and the model
    learns the same subspace as PCA (Baldi & Hornik 1989).

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

    def encode(self, x: Tensor) -> Tensor:
        """``(N, *image_shape)`` images in [0, 1] -> ``(N, latent_dim)`` codes."""
        self._check_x(x)
        return self.encoder(x.flatten(1))

    def decode(self, z: Tensor) -> Tensor:
        """``(N, latent_dim)`` codes -> ``(N, *image_shape)`` logits (or means)."""
        self._check_z(z)
        return self._to_image(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0, x_in: Tensor | None = None) -> losses.LossParts:
        """Reconstruction loss per example ``(N,)`` in nats (the KL part is zero for an AE).

        ``x_in``: a corrupted input to encode instead of ``x`` (denoising autoencoder); the loss
        still scores the reconstruction against the clean ``x``."""
        recon = losses.reconstruction_nll(self(x if x_in is None else x_in), x, self.likelihood)
        return losses.LossParts(recon, recon, torch.zeros_like(recon))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Images -> reconstructed images in [0, 1], same shape."""
        return self.to_pixels(self(x))


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

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, *image_shape)`` -> ``(mu, logvar)``, each ``(N, latent_dim)``: q(z|x)'s mean and
        log-variance. Raises ValueError/TypeError on a wrong shape, dtype, NaN or values outside [0, 1]."""
        self._check_x(x)
        return self._heads(x.flatten(1))

    def _heads(self, h_in: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(h_in)
        return self.mu_head(h), self.logvar_head(h)

    @staticmethod
    def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I), sigma = exp(logvar / 2): a sample of q(z|x)
        that is a differentiable function of mu and logvar (Kingma & Welling 2014, Sec. 2.4).
        ``(N, J), (N, J) -> (N, J)``."""
        std = torch.exp(0.5 * losses.clamp_logvar(logvar))
        return mu + std * torch.randn_like(std)

    def decode(self, z: Tensor) -> Tensor:
        """``(N, latent_dim)`` -> ``(N, *image_shape)`` logits of p(x|z) (means if Gaussian)."""
        self._check_z(z)
        return self._to_image(self.decoder(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x -> ``(logits, mu, logvar)`` using one sample z ~ q(z|x)."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0, free_bits: float = 0.0) -> losses.LossParts:
        """Negative ELBO per example ``(N,)`` in nats, with its parts (one sample of z).

        ``beta`` weights the KL (beta-VAE); ``free_bits`` (nats per latent dimension) replaces it
        in ``total`` by ``losses.free_bits_kl``; the ``kl`` part is always the true KL."""
        logits, mu, logvar = self(x)
        return losses.negative_elbo(logits, x, mu, logvar, beta=beta, likelihood=self.likelihood,
                                    decoder_logvar=self.decoder_logvar_or_zero(), free_bits=free_bits)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Images -> images in [0, 1] decoded from the posterior mean (no sampling noise)."""
        mu, _ = self.encode(x)
        return self.to_pixels(self.decode(mu))

    def prior_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) under the prior N(0, I), nats: ``(..., latent_dim) -> (...)``. Models with
        another prior override this; ``evaluate.importance_weighted_nll`` calls it."""
        return losses.gaussian_log_prob(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in [0, 1] decoded from z ~ N(0, I): ``(n, *image_shape)``."""
        validate.positive_int(n, "n")
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.to_pixels(self.decode(z))


class CVAE(VAE):
    """A conditional VAE (Sohn, Lee & Yan 2015): the label y enters encoder and decoder as a
    one-hot vector, so q(z|x, y) and p(x|z, y); the prior stays N(0, I).

    Args: as ``VAE`` plus ``num_classes`` (10 for MNIST). Labels are int64 ``(N,)`` in
    ``[0, num_classes)``.
    """

    conditional = True

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", num_classes=10, decoder_variance="fixed"):
        validate.positive_int(num_classes, "num_classes")
        self.num_classes = num_classes  # read by VAE.__init__ to widen the inputs
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation, decoder_variance)

    def one_hot(self, y: Tensor, n: int | None = None, name: str = "y") -> Tensor:
        """Labels ``(N,)`` int64 -> one-hot ``(N, num_classes)`` float (1 at each label's index).

        ``n``: the batch size the labels must match (checked; default ``len(y)``).
        Raises TypeError / ValueError for labels of the wrong dtype, length or range."""
        validate.tensor(y, name)
        n = y.shape[0] if n is None and y.dim() >= 1 else n
        validate.labels(y, name, n if n is not None else 0, self.num_classes)
        return nn.functional.one_hot(y, self.num_classes).to(self.mu_head.weight.dtype)

    def encode(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``x (N, *image_shape)``, ``y (N,)`` -> ``(mu, logvar)`` of q(z|x, y), each ``(N, latent_dim)``."""
        self._check_x(x)
        return self._heads(torch.cat([x.flatten(1), self.one_hot(y, x.shape[0])], dim=1))

    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """``z (N, latent_dim)``, ``y (N,)`` -> ``(N, *image_shape)`` logits of p(x|z, y)."""
        self._check_z(z)
        return self._to_image(self.decoder(torch.cat([z, self.one_hot(y, z.shape[0])], dim=1)))

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x, y)
        return self.decode(self.reparameterize(mu, logvar), y), mu, logvar

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0, free_bits: float = 0.0) -> losses.LossParts:
        """Conditional negative ELBO, -log p(x|y) bound, per example ``(N,)`` in nats (``beta``,
        ``free_bits``: as ``VAE.loss``)."""
        if y is None:
            raise ValueError("y: a CVAE needs labels (int64 tensor of shape (N,)), got None")
        logits, mu, logvar = self(x, y)
        return losses.negative_elbo(logits, x, mu, logvar, beta=beta, likelihood=self.likelihood,
                                    decoder_logvar=self.decoder_logvar_or_zero(), free_bits=free_bits)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor) -> Tensor:
        mu, _ = self.encode(x, y)
        return self.to_pixels(self.decode(mu, y))

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | int = 0, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images of class ``y`` (an int, or an ``(n,)`` int64 tensor) from z ~ N(0, I)."""
        validate.positive_int(n, "n")
        if isinstance(y, int) and not isinstance(y, bool):
            y = torch.full((n,), y, dtype=torch.int64)
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.to_pixels(self.decode(z, validate.tensor(y, "y").to(self.device)))


class MixturePriorVAE(VAE):
    """A VAE whose prior is a learned mixture of K diagonal Gaussians instead of N(0, I):
    ``p(z) = sum_k pi_k N(z; m_k, diag exp(v_k))``, with the means ``m``, log-variances ``v`` and
    mixture logits (``pi = softmax(logits)``) trained with the rest of the model.

    The KL between the Gaussian q(z|x) and a mixture has no closed form, so the loss uses the
    one-sample Monte Carlo estimate ``log q(z|x) - log p(z)`` at the same z that the decoder
    sees (``losses.monte_carlo_kl``). Mixture priors in VAEs: Dilokthanakul et al. (2016),
    "Deep Unsupervised Clustering with Gaussian Mixture VAEs"; Tomczak & Welling (2018), "VAE
    with a VampPrior" (Sec. 2, the MoG prior as the baseline of the VampPrior).

    Args: as ``VAE`` plus ``n_components`` (K >= 1). The means start at random points drawn from
    N(0, I) (torch's global RNG, like the weights), the variances at 1, the weights equal.
    With K = 1 and the component fixed at N(0, I) this is the plain VAE with a noisy KL.
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu", n_components=10):
        validate.positive_int(n_components, "n_components")
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
        components, ``losses.mixture_log_prob``)."""
        validate.floating(z, "z")
        if z.dim() < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z: expected shape (..., {self.latent_dim}) (latent_dim={self.latent_dim}), got {tuple(z.shape)}")
        return losses.mixture_log_prob(z, self.prior_means, self.prior_logvars, self.prior_logits)

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0) -> losses.LossParts:
        """Negative ELBO per example ``(N,)`` in nats: reconstruction + beta * (one-sample Monte
        Carlo KL). The KL part of a single example can be negative; its mean is the KL."""
        validate.positive_float(beta, "beta", allow_zero=True)
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        recon = losses.reconstruction_nll(self.decode(z), x, self.likelihood)
        kl = losses.monte_carlo_kl(z, mu, logvar, self.prior_log_prob(z))
        return losses.LossParts(recon + beta * kl, recon, kl)

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``(n, latent_dim)`` draws of z from the mixture: a component k ~ pi, then z ~ N(m_k, diag exp(v_k))."""
        validate.positive_int(n, "n")
        k = torch.multinomial(self.prior_weights.cpu(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.latent_dim, generator=generator)
        std = torch.exp(0.5 * losses.clamp_logvar(self.prior_logvars.detach().cpu()))
        return (self.prior_means.detach().cpu()[k] + std[k] * eps).to(self.device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images in [0, 1] decoded from z drawn from the mixture prior: ``(n, *image_shape)``."""
        return self.to_pixels(self.decode(self.sample_prior(n, generator)))


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
        if not (isinstance(channels, (tuple, list)) and len(channels) == 2
                and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels)):
            raise ValueError(f"channels: expected two positive ints such as (16, 32), got {channels!r}")
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

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, C, H, W)`` -> ``(mu, logvar)``, each ``(N, latent_dim)``."""
        self._check_x(x)
        return self._heads(x)


MODELS = {cls.__name__: cls for cls in (Autoencoder, VAE, CVAE, MixturePriorVAE, ConvVAE)}
