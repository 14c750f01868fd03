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
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

MODES = ("fast", "full")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    mode: str
    device: torch.device
    data_dir: Path
    offline: bool

    @property
    def fast(self) -> bool:
        """True in fast (CI) mode."""
        return self.mode == "fast"

    def pick(self, fast, full):
        """Return ``fast`` in fast mode and ``full`` in full mode (epochs, sample counts, ...)."""
        return fast if self.fast else full


def _default_data_dir() -> Path:
    # A source checkout (editable install) has pyproject.toml beside the package.
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "data"
    return Path.home() / ".cache" / "vae_course"


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


def _data_dir(value: str | None) -> Path:
    if value is None:
        return _default_data_dir()
    if "\0" in value:
        raise ValueError(f"VAE_COURSE_DATA_DIR: expected a directory path, got {value!r} (holds a NUL byte)")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"VAE_COURSE_DATA_DIR: expected a directory, got {value!r}, which is a file")
    return path


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
    )
