"""Two Monte Carlo estimators of the gradient of an expectation E_{z ~ q}[f(z)] with respect to
the parameters of q = N(mu, diag exp(logvar)): the score function (REINFORCE, Williams 1992)
and the reparameterization (pathwise) estimator (Kingma & Welling 2014, Sec. 2.4; Rezende et
al. 2014). Both are unbiased; the reparameterization estimator usually has far lower variance
because it uses f's gradient, not only its value (notebook 04 measures both).

Each function returns one gradient estimate *per sample* (rows), so their mean is the usual
n-sample estimate and their variance can be measured.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from vae_course import gaussian, validate

__all__ = ["reparameterization_gradients", "score_function_gradients"]


def _expand(mu: Tensor, logvar: Tensor, n: int) -> tuple[Tensor, Tensor]:
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    if mu.dim() != 1:
        raise ValueError(f"mu: expected shape (D,), got {tuple(mu.shape)}")
    validate.same_shape(mu, "mu", logvar, "logvar")
    validate.positive_int(n, "n")
    # One copy of the parameters per sample, so each row's gradient is that sample's estimate.
    return (mu.detach().expand(n, -1).clone().requires_grad_(True),
            logvar.detach().expand(n, -1).clone().requires_grad_(True))


def reparameterization_gradients(f: Callable[[Tensor], Tensor], mu: Tensor, logvar: Tensor, n: int,
                                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample pathwise gradients of E_q[f(z)]: z = mu + exp(logvar/2) * eps, grad of f(z).

    Args:
        f: maps ``(n, D)`` latents to ``(n,)`` values, differentiably, row by row.
        mu, logvar: ``(D,)`` parameters of q.
        n: number of samples.
        generator: a CPU ``torch.Generator`` for the noise eps (``None``: torch's global RNG).

    Returns:
        ``(grad_mu, grad_logvar)``, each ``(n, D)``: one estimate per row, in f's units per unit
        of the parameter.

    Raises:
        TypeError / ValueError: ``mu`` or ``logvar`` not a floating-point ``(D,)`` tensor, shapes
        that differ, ``n`` not a positive int.
    """
    mu_n, logvar_n = _expand(mu, logvar, n)
    eps = torch.randn(mu_n.shape, generator=generator, dtype=mu_n.dtype).to(mu_n.device)
    z = gaussian.reparameterize(mu_n, logvar_n, eps)
    f(z).sum().backward()
    return mu_n.grad, logvar_n.grad


def score_function_gradients(f: Callable[[Tensor], Tensor], mu: Tensor, logvar: Tensor, n: int,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample score-function (REINFORCE) gradients of E_q[f(z)]: f(z) * grad log q(z).

    Only f's *values* are used, so f need not be differentiable. Same arguments and returns as
    ``reparameterization_gradients``.
    """
    mu_n, logvar_n = _expand(mu, logvar, n)
    with torch.no_grad():
        eps = torch.randn(mu_n.shape, generator=generator, dtype=mu_n.dtype).to(mu_n.device)
        z = gaussian.reparameterize(mu_n, logvar_n, eps)
        values = f(z)
    log_q = gaussian.log_prob(z, mu_n, logvar_n)  # per row; its gradient is the score
    (values.detach() * log_q).sum().backward()
    return mu_n.grad, logvar_n.grad
