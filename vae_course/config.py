"""The one place where the course reads its settings.

Environment variables (all optional; unset or empty means the default). Each accepts exactly the
values listed; anything else raises ``ValueError`` naming the variable and the value.

``VAE_COURSE_MODE``
    ``fast`` (CI: every notebook in about a minute on a 2-core CPU) or ``full``
    (learners: train to good quality). Default ``full``.
``VAE_COURSE_DEVICE``
    ``cpu``, ``cuda``, ``cuda:N`` (N below the number of visible GPUs) or ``mps`` (Apple
    silicon, when torch has it). Default: ``cuda`` when a GPU is visible, else ``cpu``.
``VAE_COURSE_DATA_DIR``
    Where datasets are cached: a directory (created when needed; ``~`` is expanded). Default:
    ``data/`` in the repository when the package runs from a checkout, else ``~/.cache/vae_course``.
``VAE_COURSE_OFFLINE``
    ``1`` (or ``true``, ``yes``) skips every download attempt (the offline MNIST subset is used
    instead); ``0`` (or ``false``, ``no``) allows them. Default ``0``.
``VAE_COURSE_CACHE_DIR``
    Where the shared trained models are kept (``vae_course.pretrained``): a directory (created
    when needed; ``~`` is expanded), or ``off`` to train them in every notebook and keep nothing.
    Default: ``build/cache/`` in the repository when the package runs from a checkout, else
    ``~/.cache/vae_course/models``.

``setup(seed)`` is the first line of every notebook: it reads the settings, seeds the random
number generators, loads MNIST and prints one line saying what it got.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

MODES = ("fast", "full")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    mode: str
    device: torch.device
    data_dir: Path
    offline: bool
    cache_dir: Path | None = None  # None: the model cache is off (VAE_COURSE_CACHE_DIR=off)

    @property
    def fast(self) -> bool:
        """True in fast (CI) mode."""
        return self.mode == "fast"

    def pick(self, fast, full):
        """Return ``fast`` in fast mode and ``full`` in full mode (epochs, sample counts, ...)."""
        return fast if self.fast else full


def _checkout() -> bool:
    # A source checkout (editable install) has pyproject.toml beside the package.
    return (REPO_ROOT / "pyproject.toml").is_file()


def _default_data_dir() -> Path:
    return REPO_ROOT / "data" if _checkout() else Path.home() / ".cache" / "vae_course"


def _default_cache_dir() -> Path:
    return REPO_ROOT / "build" / "cache" if _checkout() else Path.home() / ".cache" / "vae_course" / "models"


OFFLINE_VALUES = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _variable(name: str) -> str | None:
    """The variable's value, or None when it is unset or empty (both mean: the default)."""
    value = os.environ.get(name)
    return value if value else None


def _device(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "'cpu', 'cuda', 'cuda:N' (N a visible GPU's index) or 'mps'"
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", name)
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"VAE_COURSE_DEVICE: expected {expected}, got {name!r}")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"VAE_COURSE_DEVICE: {name!r} asked for, but torch sees no CUDA device")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"VAE_COURSE_DEVICE: expected a GPU index below {count} (the GPUs torch sees), "
                             f"got {name!r}")
    if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"VAE_COURSE_DEVICE: 'mps' asked for, but this torch has no usable MPS device")
    return device


def _directory(name: str, value: str) -> Path:
    if "\0" in value:
        raise ValueError(f"{name}: expected a directory path, got {value!r} (holds a NUL byte)")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name}: expected a directory, got {value!r}, which is a file")
    return path


def _data_dir(value: str | None) -> Path:
    return _default_data_dir() if value is None else _directory("VAE_COURSE_DATA_DIR", value)


CACHE_OFF = "off"


def _cache_dir(value: str | None) -> Path | None:
    if value is None:
        return _default_cache_dir()
    if value == CACHE_OFF:
        return None
    return _directory("VAE_COURSE_CACHE_DIR", value)


def settings() -> Settings:
    """Read the settings from the environment (each call reads them afresh).

    Raises:
        ValueError: a ``VAE_COURSE_*`` variable holds a value other than those documented above
            (the message names the variable, the values it accepts and the value it got), or
            ``VAE_COURSE_DEVICE`` names a device this machine does not have.
    """
    mode = _variable("VAE_COURSE_MODE") or "full"
    if mode not in MODES:
        raise ValueError(f"VAE_COURSE_MODE: expected one of {MODES}, got {mode!r}")
    offline = _variable("VAE_COURSE_OFFLINE") or "0"
    if offline not in OFFLINE_VALUES:
        raise ValueError(f"VAE_COURSE_OFFLINE: expected one of {tuple(OFFLINE_VALUES)}, got {offline!r}")
    return Settings(
        mode=mode,
        device=_device(_variable("VAE_COURSE_DEVICE")),
        data_dir=_data_dir(_variable("VAE_COURSE_DATA_DIR")),
        offline=OFFLINE_VALUES[offline],
        cache_dir=_cache_dir(_variable("VAE_COURSE_CACHE_DIR")),
    )


@dataclass(frozen=True, eq=False)
class Mnist:
    """The digits a notebook works on, as ``setup`` loaded them.

    ``train`` and ``test`` are ``(images, labels)`` pairs: images float32 ``(N, 1, 28, 28)`` in
    [0, 1], labels int64 ``(N,)``; N is 60,000 / 10,000 for full MNIST, 4,500 / 500 for the
    offline subset (``data.load_mnist``). ``source`` is the sentence saying where they came from.
    """

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    source: str

    @cached_property
    def checksum(self) -> str:
        """SHA-256 (hex) of the four tensors' dtypes, shapes and bytes: what the model cache is keyed by."""
        digest = hashlib.sha256()
        for tensor in (*self.train, *self.test):
            digest.update(f"{tensor.dtype} {tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def setup(seed: int = 0, *, mnist: bool = True) -> tuple[Settings, Mnist | None]:
    """The first line of every notebook: ``cfg, mnist = vae_course.setup(seed=0)``.

    Reads the settings (``settings()``), seeds torch's, NumPy's and Python's global random number
    generators with ``seed``, loads the MNIST train and test splits (``data.load_mnist``; skipped
    with ``mnist=False``) and prints one line: the mode, the device and where the digits came from.

    Returns:
        ``(settings, Mnist)`` (``Mnist`` is None when ``mnist=False``).

    Raises:
        ValueError: a bad ``VAE_COURSE_*`` variable (see ``settings``); TypeError / ValueError: a
            seed that is not an integer in [0, 2**63).
    """
    from vae_course import data, validate  # here: data imports this module

    seed = validate.seed(seed, "seed")
    cfg = settings()
    digits = None
    line = f"{cfg.mode} mode, device {cfg.device}"
    if mnist:
        train, test = data.load_mnist("train", quiet=True), data.load_mnist("test", quiet=True)
        # load_mnist's sentences without their "MNIST split:" prefix and digit count, said once if the same
        where = [re.sub(r"^MNIST \w+: | \([\d,]+ digits\)|[\d,]+ digits; ", "", data.mnist_source_description(split))
                 for split in ("train", "test")]
        source = where[0] if where[0] == where[1] else f"train: {where[0]}; test: {where[1]}"
        source = f"MNIST {len(train[1]):,} train and {len(test[1]):,} test digits, {source}"
        digits = Mnist(train=train, test=test, source=source)
        line += f"; {source}"
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    print(line)
    return cfg, digits
