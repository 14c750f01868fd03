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
        if self.likelihood == "bernoulli":
            return torch.sigmoid(decoder_output)
        return decoder_output.clamp(0.0, 1.0)


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
    (the 784-400-20 model of pytorch/examples).
    """

    def __init__(self, image_shape=MNIST_SHAPE, hidden_dims=(400,), latent_dim=20,
                 likelihood="bernoulli", activation="relu"):
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation)
        cond = self.num_classes  # 0 for the VAE, number of classes for the CVAE
        trunk = [self.input_dim + cond, *self.hidden_dims]
        # Hidden layers, each followed by the activation (the heads below read the last one).
        self.encoder = nn.Sequential(*mlp(trunk, self.act), self.act()) if self.hidden_dims else nn.Identity()
        self.mu_head = nn.Linear(trunk[-1], latent_dim)
        self.logvar_head = nn.Linear(trunk[-1], latent_dim)
        self.decoder = mlp([latent_dim + cond, *reversed(self.hidden_dims), self.input_dim], self.act)

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
        ``(N, D), (N, D) -> (N, D)``."""
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

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0) -> losses.LossParts:
        """Negative ELBO per example ``(N,)`` in nats, with its parts (one sample of z)."""
        logits, mu, logvar = self(x)
        return losses.negative_elbo(logits, x, mu, logvar, beta=beta, likelihood=self.likelihood)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Images -> images in [0, 1] decoded from the posterior mean (no sampling noise)."""
        mu, _ = self.encode(x)
        return self.to_pixels(self.decode(mu))

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
                 likelihood="bernoulli", activation="relu", num_classes=10):
        validate.positive_int(num_classes, "num_classes")
        self.num_classes = num_classes  # read by VAE.__init__ to widen the inputs
        super().__init__(image_shape, hidden_dims, latent_dim, likelihood, activation)

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

    def loss(self, x: Tensor, y: Tensor | None = None, beta: float = 1.0) -> losses.LossParts:
        """Conditional negative ELBO, -log p(x|y) bound, per example ``(N,)`` in nats."""
        if y is None:
            raise ValueError("y: a CVAE needs labels (int64 tensor of shape (N,)), got None")
        logits, mu, logvar = self(x, y)
        return losses.negative_elbo(logits, x, mu, logvar, beta=beta, likelihood=self.likelihood)

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


MODELS = {cls.__name__: cls for cls in (Autoencoder, VAE, CVAE)}
