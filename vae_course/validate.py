"""Input checks shared by the package: each error names the argument, what was expected and
what was received, so a learner sees at once which call went wrong."""
from __future__ import annotations

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


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def seed(value, name: str = "seed") -> int:
    """A random seed: an int in [0, 2**63) (a numpy integer or a 0-d integer tensor is accepted)."""
    import numbers

    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) < 2**63:
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {type(value).__name__} {value!r}")
    return int(value)


def positive_float(value, name: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not ok or value < 0 or (value == 0 and not allow_zero) or value == float("inf"):
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return float(value)


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
