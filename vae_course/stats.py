"""Statistics of repeated measurements: a mean and its standard error.

The package reports every Monte Carlo or per-example average with its standard error, the
sample standard deviation over sqrt(n) (e.g. Wasserman 2004, *All of Statistics*, Sec. 6.3.2):
about two-thirds of repeated estimates fall within one standard error of the true mean.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["mean_and_stderr"]


def mean_and_stderr(values: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """The mean of ``values`` along ``dim`` and its standard error, ``std / sqrt(n)``.

    ``std`` is the sample standard deviation (Bessel's n - 1); with fewer than two values the
    standard error is undefined and returned as NaN.

    Args:
        values: a floating-point tensor, e.g. ``(n,)`` per-example nats or ``(S, N)`` Monte Carlo
            samples for N examples (a NumPy array or a list of numbers is turned into a float64 tensor).
        dim: the dimension that holds the n repeated values.

    Returns:
        ``(mean, stderr)``: two tensors of ``values``' shape without ``dim``, in its units.

    Raises:
        ValueError: no values along ``dim``, or values that are not numbers (the message names ``values``).
    """
    if not isinstance(values, Tensor):
        try:
            values = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"values: expected a tensor, array or list of numbers, got {type(values).__name__}") from err
    if values.dim() == 0 or values.shape[dim] == 0:
        raise ValueError(f"values: expected at least one value along dim {dim}, got shape {tuple(values.shape)}")
    n = values.shape[dim]
    mean = values.mean(dim)
    if n < 2:
        return mean, torch.full_like(mean, math.nan)
    return mean, values.std(dim) / math.sqrt(n)
