"""A variational autoencoder written from scratch in NumPy: every layer's forward and backward
pass by hand, for reading (notebook 06).

Each layer has ``forward(...)``, which computes its output and keeps what the backward pass
needs, and ``backward(grad_out)``, which takes dLoss/d(output) and returns dLoss/d(input).
Layers with parameters keep them in ``params`` (a dict name -> array) and *add* their gradients
to ``grads`` (the same names and shapes), as PyTorch does, so several backward passes
accumulate until ``zero_grad()``. Everything works in float64 on ``(N, ...)`` batches, N >= 1.

Every layer checks the shapes it receives and raises ``ValueError`` naming the layer, the
expected shape and the received one, e.g. ``Dense 'encoder.0': expected input of shape (N, 9),
got (4, 8)``.

Losses are per example, averaged over the batch, in nats. The model (``VAE``) is an encoder,
a Gaussian latent head ``q(z|x) = N(mu, diag sigma^2)`` with ``sigma^2 = softplus(a)``, the
reparameterization ``z = mu + sigma * eps`` and a decoder ``p(x|z) = N(x_hat, decoder_std^2 I)``,
trained on the negative ELBO (Kingma & Welling 2014, "Auto-Encoding Variational Bayes", Eq. 10
and Appendix B) with Adam (Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization",
Algorithm 1). One training step runs the encoder once and the decoder S times, each on a fresh
sample of z, and averages the S gradients.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from vae_course import validate  # argument checks (names, expected, received), shared with the package

__all__ = [
    "Adam",
    "ConvTranspose2d",
    "Conv2d",
    "Dense",
    "GaussianHead",
    "GaussianKL",
    "Layer",
    "Reparameterize",
    "Reshape",
    "Sequential",
    "Softplus",
    "SquaredError",
    "Tanh",
    "VAE",
    "make_vae",
    "check_shape",
    "gradient_check",
    "gradient_variance",
    "numerical_gradient",
    "TOY_IMAGE_NAMES",
    "toy_images_3x3",
]


# ----------------------------------------------------------------------------- shape checks

def _shape_text(shape: Sequence) -> str:
    """``("N", 9)`` -> ``"(N, 9)"``."""
    parts = [str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def check_shape(layer: str, what: str, x, expected: Sequence | None = None) -> np.ndarray:
    """Check that ``x`` is a floating-point NumPy array of shape ``expected``.

    ``expected`` holds ints (that exact size) and names such as ``"N"`` (any size >= 1);
    ``None`` accepts any shape.

    Raises:
        TypeError: ``x`` is not a floating-point NumPy array.
        ValueError: the shape differs; the message names ``layer``, ``what`` and both shapes.
    """
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        kind = f"an array of dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{layer}: expected {what} as a floating-point NumPy array, got {kind}")
    if expected is None:
        return x
    fits = x.ndim == len(expected) and all(
        (isinstance(e, str) and s >= 1) or e == s for e, s in zip(expected, x.shape))
    if not fits:
        raise ValueError(f"{layer}: expected {what} of shape {_shape_text(expected)}, got {tuple(x.shape)}")
    return x


class Layer:
    """The common part of all layers: a name (for error messages), parameters and gradients."""

    kind = "Layer"

    def __init__(self, name: str | None = None):
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._cache: tuple | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}" if self.name else self.kind

    def zero_grad(self) -> None:
        for key, value in self.params.items():
            self.grads[key] = np.zeros_like(value)

    def _cached(self) -> tuple:
        if self._cache is None:
            raise RuntimeError(f"{self.label}: backward() called before forward()")
        return self._cache


# ----------------------------------------------------------------------------- layers

class Dense(Layer):
    """``y = x W + b``: ``x (N, in_features)`` -> ``y (N, out_features)``.

    Backward: ``dL/dx = g W^T``, ``dL/dW = x^T g``, ``dL/db = sum_n g_n``, with ``g = dL/dy``.
    Weights start as N(0, 1/in_features) (so a layer keeps its input's scale), biases at 0.
    """

    kind = "Dense"

    def __init__(self, in_features: int, out_features: int, rng: np.random.Generator, name: str | None = None):
        super().__init__(name)
        self.in_features, self.out_features = in_features, out_features
        self.params["W"] = rng.standard_normal((in_features, out_features)) / math.sqrt(in_features)
        self.params["b"] = np.zeros(out_features)
        self.zero_grad()

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x, ("N", self.in_features))
        self._cache = (x,)
        return x @ self.params["W"] + self.params["b"]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (x,) = self._cached()
        check_shape(self.label, "grad_out", grad_out, (x.shape[0], self.out_features))
        self.grads["W"] += x.T @ grad_out
        self.grads["b"] += grad_out.sum(axis=0)
        return grad_out @ self.params["W"].T


class Tanh(Layer):
    """``y = tanh(x)`` elementwise, any shape; backward ``dL/dx = g (1 - y^2)``."""

    kind = "Tanh"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x)
        y = np.tanh(x)
        self._cache = (y,)
        return y

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (y,) = self._cached()
        check_shape(self.label, "grad_out", grad_out, y.shape)
        return grad_out * (1.0 - y**2)


class Softplus(Layer):
    """``y = softplus(x) = ln(1 + e^x)`` elementwise (> 0); backward ``dL/dx = g sigmoid(x)``.

    Computed as ``logaddexp(0, x)``, which neither overflows for large x nor loses digits for
    negative x.
    """

    kind = "Softplus"

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x)
        self._cache = (x,)
        return np.logaddexp(0.0, x)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (x,) = self._cached()
        check_shape(self.label, "grad_out", grad_out, x.shape)
        sigmoid = np.exp(-np.logaddexp(0.0, -x))  # 1 / (1 + e^-x), stable for both signs
        return grad_out * sigmoid


class Reshape(Layer):
    """Reshape each example: ``(N, *in_shape)`` -> ``(N, *out_shape)`` (e.g. image <-> vector)."""

    kind = "Reshape"

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], name: str | None = None):
        super().__init__(name)
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        if math.prod(self.in_shape) != math.prod(self.out_shape):
            raise ValueError(f"{self.label}: in_shape {self.in_shape} and out_shape {self.out_shape} "
                             f"hold different numbers of values")

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x, ("N", *self.in_shape))
        return x.reshape(len(x), *self.out_shape)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        check_shape(self.label, "grad_out", grad_out, ("N", *self.out_shape))
        return grad_out.reshape(len(grad_out), *self.in_shape)


def _windows(k: int, stride: int, out_h: int, out_w: int):
    """For each kernel offset (i, j): the slices picking, at every output position, the input
    pixel that offset touches (rows i, i + stride, ..., columns j, j + stride, ...)."""
    for i in range(k):
        for j in range(k):
            yield i, j, (slice(i, i + stride * (out_h - 1) + 1, stride), slice(j, j + stride * (out_w - 1) + 1, stride))


class _Kernel(Layer):
    """What Conv2d and ConvTranspose2d share: channels, kernel size k, stride, weights and biases.
    Weights start as N(0, 1 / (C_in k^2)), biases at 0."""

    transposed = False  # W is (C_out, C_in, k, k) for a convolution, (C_in, C_out, k, k) for its transpose

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 rng: np.random.Generator, name: str | None = None):
        super().__init__(name)
        self.in_channels, self.out_channels, self.k, self.stride = in_channels, out_channels, kernel_size, stride
        channels = (in_channels, out_channels) if self.transposed else (out_channels, in_channels)
        fan_in = in_channels * kernel_size**2
        self.params["W"] = rng.standard_normal((*channels, kernel_size, kernel_size)) / math.sqrt(fan_in)
        self.params["b"] = np.zeros(out_channels)
        self.zero_grad()


class Conv2d(_Kernel):
    """A 2-D convolution (cross-correlation, as in ``torch.nn.functional.conv2d``), no padding.

    ``x (N, C_in, H, W)`` -> ``y (N, C_out, H', W')`` with ``H' = (H - k) // stride + 1``:
    ``y[n, o, r, v] = b[o] + sum_{ch, i, j} W[o, ch, i, j] x[n, ch, stride r + i, stride v + j]`` (row r, column v).
    Written as a loop over the k*k kernel offsets: each offset multiplies a strided view of the
    input by one ``(C_out, C_in)`` slice of W. The backward pass runs the same loop, sending
    ``g = dL/dy`` back: ``dL/dW[:, :, i, j] = sum g * view``, and each view's pixels receive
    ``W[:, :, i, j]^T g`` (added, because overlapping windows share pixels).
    """

    kind = "Conv2d"

    def output_size(self, size: int) -> int:
        return (size - self.k) // self.stride + 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x, ("N", self.in_channels, "H", "W"))
        n, _, h, w = x.shape
        if h < self.k or w < self.k:
            raise ValueError(f"{self.label}: expected input of shape (N, {self.in_channels}, H, W) with H, W >= "
                             f"{self.k} (the kernel size), got {tuple(x.shape)}")
        out_h, out_w = self.output_size(h), self.output_size(w)
        W, y = self.params["W"], np.zeros((n, self.out_channels, out_h, out_w))
        for i, j, (rows, cols) in _windows(self.k, self.stride, out_h, out_w):
            y += np.einsum("nchw,oc->nohw", x[:, :, rows, cols], W[:, :, i, j])
        self._cache = (x,)
        return y + self.params["b"][None, :, None, None]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (x,) = self._cached()
        n, _, h, w = x.shape
        out_h, out_w = self.output_size(h), self.output_size(w)
        check_shape(self.label, "grad_out", grad_out, (n, self.out_channels, out_h, out_w))
        W, grad_x = self.params["W"], np.zeros_like(x)
        for i, j, (rows, cols) in _windows(self.k, self.stride, out_h, out_w):
            self.grads["W"][:, :, i, j] += np.einsum("nohw,nchw->oc", grad_out, x[:, :, rows, cols])
            grad_x[:, :, rows, cols] += np.einsum("nohw,oc->nchw", grad_out, W[:, :, i, j])
        self.grads["b"] += grad_out.sum(axis=(0, 2, 3))
        return grad_x


class ConvTranspose2d(_Kernel):
    """The transpose of ``Conv2d`` (as ``torch.nn.functional.conv_transpose2d``), no padding.

    ``x (N, C_in, H, W)`` -> ``y (N, C_out, (H - 1) stride + k, (W - 1) stride + k)``: each input
    pixel stamps ``x[n, ch, r, c] * W[ch, :, :, :]`` onto the output at ``(stride r, stride c)``;
    overlapping stamps add. Its forward pass is ``Conv2d``'s backward pass for the input, and its
    backward pass for the input is ``Conv2d``'s forward pass: the same loop over kernel offsets
    with the roles swapped. ``W`` has shape ``(C_in, C_out, k, k)``, as in PyTorch.
    """

    kind = "ConvTranspose2d"
    transposed = True

    def output_size(self, size: int) -> int:
        return (size - 1) * self.stride + self.k

    def forward(self, x: np.ndarray) -> np.ndarray:
        check_shape(self.label, "input", x, ("N", self.in_channels, "H", "W"))
        n, _, h, w = x.shape
        W = self.params["W"]
        y = np.zeros((n, self.out_channels, self.output_size(h), self.output_size(w)))
        for i, j, (rows, cols) in _windows(self.k, self.stride, h, w):
            y[:, :, rows, cols] += np.einsum("nchw,co->nohw", x, W[:, :, i, j])
        self._cache = (x,)
        return y + self.params["b"][None, :, None, None]

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        (x,) = self._cached()
        n, _, h, w = x.shape
        check_shape(self.label, "grad_out", grad_out, (n, self.out_channels, self.output_size(h), self.output_size(w)))
        W, grad_x = self.params["W"], np.zeros_like(x)
        for i, j, (rows, cols) in _windows(self.k, self.stride, h, w):
            view = grad_out[:, :, rows, cols]
            self.grads["W"][:, :, i, j] += np.einsum("nchw,nohw->co", x, view)
            grad_x += np.einsum("nohw,co->nchw", view, W[:, :, i, j])
        self.grads["b"] += grad_out.sum(axis=(0, 2, 3))
        return grad_x


class Sequential(Layer):
    """Layers applied in order; backward runs them in reverse order (the chain rule)."""

    kind = "Sequential"

    def __init__(self, layers: Sequence[Layer], name: str | None = None):
        super().__init__(name)
        self.layers = list(layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def parameter_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.params]


# ----------------------------------------------------------------------------- the VAE parts

class GaussianHead(Layer):
    """The encoder's last layer: ``h (N, in_features)`` -> ``(mu, var)``, each ``(N, latent_dim)``.

    ``mu = h W_mu + b_mu`` and ``var = sigma^2 = softplus(h W_a + b_a)``: softplus keeps the
    variance positive and, unlike ``exp``, grows only linearly. Backward takes ``dL/dmu`` and
    ``dL/dvar`` and returns ``dL/dh``, the sum of what flows back through both branches.
    """

    kind = "GaussianHead"

    def __init__(self, in_features: int, latent_dim: int, rng: np.random.Generator, name: str | None = None):
        super().__init__(name)
        self.latent_dim = latent_dim
        prefix = f"{name}." if name else ""
        self.mean = Dense(in_features, latent_dim, rng, name=prefix + "mean")
        self.pre_var = Dense(in_features, latent_dim, rng, name=prefix + "pre_var")
        self.softplus = Softplus(name=prefix + "softplus")

    def forward(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.forward(h), self.softplus.forward(self.pre_var.forward(h))

    def backward(self, grad_mu: np.ndarray, grad_var: np.ndarray) -> np.ndarray:
        return self.mean.backward(grad_mu) + self.pre_var.backward(self.softplus.backward(grad_var))

    def zero_grad(self) -> None:
        self.mean.zero_grad()
        self.pre_var.zero_grad()

    def parameter_layers(self) -> list[Layer]:
        return [self.mean, self.pre_var]


class Reparameterize(Layer):
    """``z = mu + sigma * eps`` with ``sigma = sqrt(var)``; ``eps ~ N(0, I)`` is an input, drawn
    by the caller, so the randomness sits outside the path the gradient takes.

    Backward: ``dL/dmu = g`` and ``dL/dvar = g * eps / (2 sigma)`` (since dz/dvar = eps / (2 sigma)).
    """

    kind = "Reparameterize"

    def forward(self, mu: np.ndarray, var: np.ndarray, eps: np.ndarray) -> np.ndarray:
        check_shape(self.label, "mu", mu, ("N", "J"))
        check_shape(self.label, "var", var, mu.shape)
        check_shape(self.label, "eps", eps, mu.shape)
        if not bool((var > 0).all()):
            raise ValueError(f"{self.label}: expected var > 0, got minimum {float(var.min()):.4g}")
        sigma = np.sqrt(var)
        self._cache = (sigma, eps)
        return mu + sigma * eps

    def backward(self, grad_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sigma, eps = self._cached()
        check_shape(self.label, "grad_out", grad_out, sigma.shape)
        return grad_out, grad_out * eps / (2.0 * sigma)


class GaussianKL(Layer):
    """``KL( N(mu, diag var) || N(0, I) ) = 1/2 sum_j (var_j - ln var_j - 1 + mu_j^2)``, averaged
    over the batch: nats per example (Kingma & Welling 2014, Appendix B).

    Backward (notebook 03): ``dKL/dmu = mu`` and ``dKL/dvar = 1/2 - 1/(2 var)``, each divided by
    N for the batch mean and multiplied by ``grad_out`` (1 when the KL is added to the loss).
    """

    kind = "GaussianKL"

    def forward(self, mu: np.ndarray, var: np.ndarray) -> float:
        check_shape(self.label, "mu", mu, ("N", "J"))
        check_shape(self.label, "var", var, mu.shape)
        self._cache = (mu, var)
        return float(0.5 * np.sum(var - np.log(var) - 1.0 + mu**2) / len(mu))

    def backward(self, grad_out: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        mu, var = self._cached()
        n = len(mu)
        return grad_out * mu / n, grad_out * (0.5 - 0.5 / var) / n


class SquaredError(Layer):
    """The Gaussian decoder's negative log-likelihood ``-ln N(x; x_hat, decoder_std^2 I)``:
    ``1/2 sum_i [ (x_i - x_hat_i)^2 / decoder_std^2 + ln(2 pi decoder_std^2) ]``, the squared
    error scaled, plus a constant; averaged over the batch: nats per example (as
    ``losses.gaussian_nll`` with ``logvar = 2 ln decoder_std``).

    Backward: ``dL/dx_hat = (x_hat - x) / (decoder_std^2 N)``, times ``grad_out``.
    """

    kind = "SquaredError"

    def __init__(self, decoder_std: float = 1.0, name: str | None = None):
        super().__init__(name)
        if not (isinstance(decoder_std, (int, float)) and 0 < decoder_std < math.inf):
            raise ValueError(f"{self.label}: expected decoder_std > 0, got {decoder_std!r}")
        self.decoder_std = float(decoder_std)

    def forward(self, x_hat: np.ndarray, x: np.ndarray) -> float:
        check_shape(self.label, "x_hat", x_hat)
        check_shape(self.label, "x (the data)", x, x_hat.shape)
        self._cache = (x_hat, x)
        var = self.decoder_std**2
        per_pixel = 0.5 * ((x - x_hat) ** 2 / var + math.log(2 * math.pi * var))
        return float(per_pixel.sum() / len(x))

    def backward(self, grad_out: float = 1.0) -> np.ndarray:
        x_hat, x = self._cached()
        return grad_out * (x_hat - x) / (self.decoder_std**2 * len(x))


# ----------------------------------------------------------------------------- Adam

class Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1), as ``torch.optim.Adam`` with its defaults.

    For each parameter p with gradient g, at step t = 1, 2, ...:
    ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    The two bias corrections undo the zero start of m and v. Parameters are updated in place.
    """

    def __init__(self, layers: Sequence[Layer], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.layers = [layer for layer in layers if layer.params]
        self.lr, self.betas, self.eps = lr, betas, eps
        self.t = 0
        self.m = [{k: np.zeros_like(p) for k, p in layer.params.items()} for layer in self.layers]
        self.v = [{k: np.zeros_like(p) for k, p in layer.params.items()} for layer in self.layers]

    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        for layer, m, v in zip(self.layers, self.m, self.v):
            for key, p in layer.params.items():
                g = layer.grads[key]
                m[key] = b1 * m[key] + (1 - b1) * g
                v[key] = b2 * v[key] + (1 - b2) * g**2
                m_hat = m[key] / (1 - b1**self.t)
                v_hat = v[key] / (1 - b2**self.t)
                p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


# ----------------------------------------------------------------------------- the model

class VAE:
    """encoder -> GaussianHead -> Reparameterize -> decoder, with the negative ELBO as its loss.

    ``encoder`` maps ``x (N, *image_shape)`` to features; ``decoder`` maps ``z (N, latent_dim)``
    back to ``x_hat (N, *image_shape)``. ``loss_and_gradients(x, eps)`` runs one encoder pass and
    ``S = len(eps)`` decoder passes and leaves the gradient of
    ``(1/S) sum_s reconstruction(x, decoder(z_s)) + KL`` in every layer's ``grads``.
    """

    def __init__(self, encoder: Sequential, head: GaussianHead, decoder: Sequential, reconstruction: SquaredError):
        self.encoder, self.head, self.decoder, self.reconstruction = encoder, head, decoder, reconstruction
        self.sampler = Reparameterize(name="sampler")
        self.kl = GaussianKL(name="kl")
        self.latent_dim = head.latent_dim

    def parameter_layers(self) -> list[Layer]:
        return self.encoder.parameter_layers() + self.head.parameter_layers() + self.decoder.parameter_layers()

    def zero_grad(self) -> None:
        for layer in self.parameter_layers():
            layer.zero_grad()

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``x (N, ...)`` -> ``(mu, var)``, each ``(N, latent_dim)``."""
        return self.head.forward(self.encoder.forward(x))

    def decode(self, z: np.ndarray) -> np.ndarray:
        """``z (N, latent_dim)`` -> ``x_hat (N, ...)``, the decoder's mean."""
        return self.decoder.forward(z)

    def loss_and_gradients(self, x: np.ndarray, eps: np.ndarray) -> dict[str, float]:
        """Negative ELBO (nats per example) and its gradients, with ``eps (S, N, latent_dim)``.

        Returns ``{"total", "reconstruction", "kl"}``; the gradients are left in the layers.
        Each decoder pass's loss enters with weight 1/S, so the accumulated gradients are the
        average of the S single-sample gradients.
        """
        self.zero_grad()
        mu, var = self.encode(x)
        check_shape("VAE", "eps", eps, ("S", len(mu), self.latent_dim))
        n_passes = len(eps)
        grad_mu, grad_var, reconstruction = np.zeros_like(mu), np.zeros_like(var), 0.0
        for eps_s in eps:  # one decoder pass per sample of z; forward then backward at once
            z = self.sampler.forward(mu, var, eps_s)
            reconstruction += self.reconstruction.forward(self.decoder.forward(z), x) / n_passes
            grad_z = self.decoder.backward(self.reconstruction.backward(1.0 / n_passes))
            d_mu, d_var = self.sampler.backward(grad_z)
            grad_mu += d_mu
            grad_var += d_var
        kl = self.kl.forward(mu, var)
        kl_mu, kl_var = self.kl.backward(1.0)
        self.encoder.backward(self.head.backward(grad_mu + kl_mu, grad_var + kl_var))
        return {"total": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}

    def train_step(self, x: np.ndarray, optimizer: Adam, rng: np.random.Generator,
                   n_decoder_passes: int = 1) -> dict[str, float]:
        """One Adam step on ``x`` with ``n_decoder_passes`` fresh samples of z per example."""
        if isinstance(n_decoder_passes, bool) or not isinstance(n_decoder_passes, int) or n_decoder_passes < 1:
            raise ValueError(f"n_decoder_passes: expected a positive int, got {n_decoder_passes!r}")
        eps = rng.standard_normal((n_decoder_passes, len(x), self.latent_dim))
        parts = self.loss_and_gradients(x, eps)
        optimizer.step()
        return parts

    def gradient_vector(self) -> np.ndarray:
        """All parameter gradients, flattened into one vector (in ``parameter_layers`` order)."""
        return np.concatenate([g.ravel() for layer in self.parameter_layers() for g in layer.grads.values()])


def gradient_variance(model: VAE, x: np.ndarray, n_decoder_passes: int, repeats: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """How noisy one step's gradient is with ``n_decoder_passes`` = S samples of z per example.

    Computes the gradient ``repeats`` times at the same parameters, each time with fresh noise
    ``eps (S, N, latent_dim)``, without updating anything. The S decoder passes are independent,
    so their average has the same mean as one pass and 1/S of its variance.

    Returns:
        ``(mean, total_variance)``: the mean gradient vector (as ``VAE.gradient_vector``) and the
        sum over all its entries of their sample variances (ddof=1).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise ValueError(f"repeats: expected an int >= 2 (a variance needs two samples), got {repeats!r}")
    samples = []
    for _ in range(repeats):
        model.loss_and_gradients(x, rng.standard_normal((n_decoder_passes, len(x), model.latent_dim)))
        samples.append(model.gradient_vector())
    samples = np.stack(samples)
    return samples.mean(axis=0), float(samples.var(axis=0, ddof=1).sum())


def make_vae(image_shape: Sequence[int] = (3, 3), hidden: int = 8, latent_dim: int = 2,
             decoder_std: float = 0.1, seed: int = 0) -> VAE:
    """A small dense VAE for ``(N, *image_shape)`` images: flatten -> Dense(hidden) -> Tanh ->
    GaussianHead(latent_dim) | z -> Dense(hidden) -> Tanh -> Dense(pixels) -> reshape.

    ``decoder_std`` is the Gaussian decoder's fixed standard deviation: 0.1 makes a pixel off
    by 0.1 cost 0.5 nats, enough for the reconstruction to outweigh the KL on tiny images.

    Raises:
        ValueError: ``image_shape``, ``hidden`` or ``latent_dim`` not integers >= 1, ``decoder_std``
            not a finite number > 0, or ``seed`` not an integer >= 0 (the message names the argument).
    """
    image_shape = validate.positive_ints(image_shape, "image_shape", example="(3, 3)")
    hidden, latent_dim = validate.positive_int(hidden, "hidden"), validate.positive_int(latent_dim, "latent_dim")
    decoder_std = validate.positive_float(decoder_std, "decoder_std")
    rng = np.random.default_rng(validate.seed(seed))
    pixels = math.prod(image_shape)
    encoder = Sequential([Reshape(image_shape, (pixels,), name="encoder.flatten"),
                          Dense(pixels, hidden, rng, name="encoder.dense"), Tanh(name="encoder.tanh")], name="encoder")
    head = GaussianHead(hidden, latent_dim, rng, name="head")
    decoder = Sequential([Dense(latent_dim, hidden, rng, name="decoder.dense1"), Tanh(name="decoder.tanh"),
                          Dense(hidden, pixels, rng, name="decoder.dense2"),
                          Reshape((pixels,), image_shape, name="decoder.unflatten")], name="decoder")
    return VAE(encoder, head, decoder, SquaredError(decoder_std, name="reconstruction"))


# ----------------------------------------------------------------------------- data

TOY_IMAGE_NAMES = ("vertical bar", "horizontal bar", "diagonal", "anti-diagonal")


def toy_images_3x3() -> np.ndarray:
    """Four 3x3 black-and-white images made in code: a vertical bar, a horizontal bar, a diagonal
    and an anti-diagonal (names in ``TOY_IMAGE_NAMES``). Each has three "on" pixels; any two
    share only the centre one, so no image is a mixture of the others.

    Returns:
        ``(4, 3, 3)`` float64 array of 0s and 1s.
    """
    images = np.zeros((4, 3, 3))
    images[0, :, 1] = 1.0                      # vertical bar
    images[1, 1, :] = 1.0                      # horizontal bar
    images[2] = np.eye(3)                      # diagonal
    images[3] = np.fliplr(np.eye(3))           # anti-diagonal
    return images


# ----------------------------------------------------------------------------- checking

def numerical_gradient(f: Callable[[], float], x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    """Central finite differences ``(f(x + step e) - f(x - step e)) / (2 step)`` for every entry of
    ``x``, ``e`` being 1 at that entry and 0 elsewhere (notebook 06 writes the step eta).

    ``f`` takes no arguments and reads ``x`` (e.g. a layer's parameter, changed in place here
    and restored after each entry). Error O(step^2) plus rounding ~1e-16/step: use float64.
    """
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + step
        up = f()
        x[index] = old - step
        down = f()
        x[index] = old
        grad[index] = (up - down) / (2 * step)
    return grad


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference, relative to the reference's scale (at least 1)."""
    return float(np.abs(ours - reference).max() / max(1.0, float(np.abs(reference).max())))


def gradient_check(layer: Layer, x: np.ndarray, torch_forward: Callable, rng: np.random.Generator,
                   step: float = 1e-6) -> dict[str, tuple[float, float]]:
    """Check a one-input layer's ``backward`` against PyTorch autograd and finite differences.

    Uses the loss ``L = sum(forward(x) * G)`` with a random ``G``, so ``dL/d(output) = G``.
    ``torch_forward(x, params)`` computes the same output with torch operations, ``params``
    being a dict of float64 tensors with the layer's parameter names.

    Returns:
        ``{"forward": (error, 0.0), "input": (autograd_error, fd_error), name: (...) per
        parameter}``: relative errors (largest difference / max(1, largest value)). In float64
        autograd agrees to ~1e-15 and finite differences (step = 1e-6) to ~1e-9.
    """
    import torch  # only the check needs PyTorch; the layers are plain NumPy

    y = layer.forward(x)
    G = rng.standard_normal(y.shape)
    layer.zero_grad()
    grads = {"input": layer.backward(G), **{k: g.copy() for k, g in layer.grads.items()}}

    leaves = {"input": torch.tensor(x, dtype=torch.float64, requires_grad=True)}
    leaves.update({k: torch.tensor(p, dtype=torch.float64, requires_grad=True) for k, p in layer.params.items()})
    y_torch = torch_forward(leaves["input"], {k: v for k, v in leaves.items() if k != "input"})
    (y_torch * torch.from_numpy(G)).sum().backward()
    errors = {"forward": (_relative_error(y, y_torch.detach().numpy()), 0.0)}

    def loss() -> float:
        return float(np.sum(layer.forward(x) * G))

    arrays = {"input": x, **layer.params}
    for name, grad in grads.items():
        autograd = _relative_error(grad, leaves[name].grad.numpy())
        errors[name] = (autograd, _relative_error(grad, numerical_gradient(loss, arrays[name], step)))
    return errors
