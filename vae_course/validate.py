"""Input checks shared by the package: each error names the argument, what was expected and
what was received, so a learner sees at once which call went wrong."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor


def tensor(value, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def floating(value, name: str) -> Tensor:
    tensor(value, name)
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor (e.g. float32), got dtype {value.dtype}")
    return value


def finite(value: Tensor, name: str) -> Tensor:
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN or inf entries")
    return value


def images(x, name: str, image_shape: tuple[int, ...]) -> Tensor:
    """Check a batch of images: float, shape (N, *image_shape), finite, values in [0, 1]."""
    floating(x, name)
    if x.dim() != 1 + len(image_shape) or tuple(x.shape[1:]) != tuple(image_shape) or x.shape[0] == 0:
        raise ValueError(f"{name}: expected shape (N, {', '.join(map(str, image_shape))}) with N >= 1, "
                         f"got {tuple(x.shape)}")
    finite(x, name)
    lo, hi = float(x.detach().min()), float(x.detach().max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name}: expected pixel values in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def labels(y, name: str, n: int, num_classes: int) -> Tensor:
    """Check class labels: int64, shape (n,), values in [0, num_classes)."""
    tensor(y, name)
    if y.dtype != torch.int64:
        raise TypeError(f"{name}: expected class indices of dtype torch.int64, got {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(f"{name}: expected shape ({n},) (one label per image), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{name}: expected labels in [0, {num_classes - 1}], "
                         f"got values in [{int(y.min())}, {int(y.max())}]")
    return y


def latents(z, name: str, latent_dim: int) -> Tensor:
    floating(z, name)
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"{name}: expected shape (N, {latent_dim}) (latent_dim={latent_dim}), got {tuple(z.shape)}")
    return z


def same_shape(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{a_name} and {b_name}: expected the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# ---------------------------------------------------------------- numbers
# A number may be a Python int or float, a NumPy scalar (np.int64, np.float32, ...) or a 0-d
# tensor or array (any device; one that requires grad gives its value). bool is refused (True is
# not a count), so are strings, None and arrays with more than one element. Every numeric check
# raises ValueError (the wrong type included) naming the argument, what was expected and what was
# received, and returns a plain Python int or float, so callers never carry a tensor onward.

def _describe(value) -> str:
    """How a received value is named in a message: its type, then its value (or its shape)."""
    if isinstance(value, (Tensor, np.ndarray)) and value.ndim > 0:
        dtype = value.dtype
        return f"{type(value).__name__} of shape {tuple(value.shape)} (dtype {dtype})"
    return f"{type(value).__name__} {value!r}"


def _number(value, name: str, expected: str) -> int | float:
    """``value`` as a Python int or float, or ValueError naming ``name`` and ``expected``."""
    plain = value
    if isinstance(value, Tensor) and value.ndim == 0:
        if value.dtype != torch.bool and not value.is_complex() and not value.is_meta:
            plain = value.item()  # detached, copied from its device: a Python int or float
    elif isinstance(value, (np.ndarray, np.generic)) and value.ndim == 0:
        if value.dtype.kind in "iuf":  # signed, unsigned, floating (not bool, complex, str)
            plain = value.item()
    if isinstance(plain, bool) or not isinstance(plain, numbers.Real):
        raise ValueError(f"{name}: expected {expected}, got {_describe(value)}")
    return int(plain) if isinstance(plain, numbers.Integral) else float(plain)


def integer(value, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (either bound may be None) as a Python int.

    A float is refused even when whole (``steps=1e4``: write ``10_000``), so a count is never a
    rounded value."""
    if low is not None and high is not None:
        bounds = f" in [{low}, {high}]" if high < 2**32 else f" in [{low}, 2**{(high + 1).bit_length() - 1})"
    else:
        bounds = f" >= {low}" if low is not None else f" <= {high}" if high is not None else ""
    expected = f"an integer{bounds} (int, NumPy integer or 0-d integer tensor)"
    number = _number(value, name, expected)
    if not isinstance(number, int):
        hint = f" (write {int(number)})" if math.isfinite(number) and number == int(number) else ""
        raise ValueError(f"{name}: expected {expected}, got {_describe(value)}{hint}")
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{name}: expected {expected}, got {_describe(value)}")
    return number


def positive_int(value, name: str) -> int:
    """An integer >= 1 (a count: steps, batch size, samples, dimensions) as a Python int."""
    return integer(value, name, low=1)


def positive_ints(value, name: str, example: str = "(400,)", min_len: int = 1) -> tuple[int, ...]:
    """A sequence of at least ``min_len`` integers >= 1 (an image shape, layer widths) as a tuple
    of Python ints; each element as ``positive_int`` accepts it (a message names ``name[i]``)."""
    sequence = isinstance(value, (tuple, list)) or (isinstance(value, (Tensor, np.ndarray)) and value.ndim == 1)
    if not sequence or len(value) < min_len:
        raise ValueError(f"{name}: expected a sequence of at least {min_len} integers >= 1 such as {example}, "
                         f"got {_describe(value)}")
    return tuple(positive_int(v, f"{name}[{i}]") for i, v in enumerate(value))


def seed(value, name: str = "seed") -> int:
    """A random seed: an integer in [0, 2**63) (a NumPy integer or a 0-d integer tensor is accepted)."""
    return integer(value, name, low=0, high=2**63 - 1)


def real(value, name: str, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite number (NaN and inf refused) within optional bounds, as a Python float.

    ``low``/``high``: the bounds; ``low_open``/``high_open``: the bound itself is excluded."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    expected = "a finite number" + (" " + " and ".join(parts) if parts else "")
    number = float(_number(value, name, expected))
    too_low = low is not None and (number < low or (low_open and number == low))
    too_high = high is not None and (number > high or (high_open and number == high))
    if not math.isfinite(number) or too_low or too_high:
        raise ValueError(f"{name}: expected {expected}, got {_describe(value)}")
    return number


def positive_float(value, name: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``) as a Python float: rates, weights, scales."""
    return real(value, name, low=0.0, low_open=not allow_zero)


def probability(value, name: str) -> float:
    """A number strictly between 0 and 1 (a quantile's probability level), as a Python float."""
    return real(value, name, low=0.0, high=1.0, low_open=True, high_open=True)


def callable_(value, name: str):
    """A function (anything callable), e.g. ``corrupt``: ``x -> corrupted x``."""
    if not callable(value):
        raise TypeError(f"{name}: expected a callable (a function such as x -> corrupted x), got {_describe(value)}")
    return value


def device(value, name: str = "device") -> torch.device:
    """A ``torch.device`` from ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a device), checked usable here."""
    if not isinstance(value, (str, torch.device)):
        raise TypeError(f"{name}: expected a device name such as 'cpu' or 'cuda', got {type(value).__name__} {value!r}")
    try:
        parsed = torch.device(value)
    except RuntimeError:
        raise ValueError(f"{name}: expected 'cpu', 'cuda' or 'cuda:N', got {value!r}") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index or 0) >= count:
            raise ValueError(f"{name}: expected a device torch can use here (CUDA devices: {count}), got {value!r}")
    elif parsed.type == "mps":
        if parsed.index not in (None, 0) or not torch.backends.mps.is_available():
            raise ValueError(f"{name}: expected a device torch can use here ('mps' needs Apple silicon), got {value!r}")
    elif parsed.type != "cpu":
        raise ValueError(f"{name}: expected 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    return parsed


def path(value, name: str):
    """A filesystem path (``str`` or ``os.PathLike``) as a ``pathlib.Path``."""
    import os
    from pathlib import Path

    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path (str or os.PathLike), got {type(value).__name__} {value!r}")
    return Path(value)
