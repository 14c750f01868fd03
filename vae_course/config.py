"""The one place where the course reads its settings.

Environment variables (all optional):

``VAE_COURSE_MODE``
    ``fast`` (CI: every notebook in about a minute on a 2-core CPU) or ``full``
    (learners: train to good quality). Default ``full``.
``VAE_COURSE_DEVICE``
    ``cpu``, ``cuda``, ``cuda:1``, ... Default: ``cuda`` when a GPU is visible, else ``cpu``.
``VAE_COURSE_DATA_DIR``
    Where datasets are cached. Default: ``data/`` in the repository when the package runs
    from a checkout, else ``~/.cache/vae_course``.
``VAE_COURSE_OFFLINE``
    ``1`` skips every download attempt (the offline MNIST subset is used instead).
"""
from __future__ import annotations

import os
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


def _device(name: str | None) -> torch.device:
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"VAE_COURSE_DEVICE: expected 'cpu', 'cuda' or 'cuda:N', got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"VAE_COURSE_DEVICE: {name!r} asked for, but torch sees no CUDA device")
    return device


def settings() -> Settings:
    """Read the settings from the environment (each call reads them afresh).

    Raises:
        ValueError: ``VAE_COURSE_MODE`` is not ``fast`` or ``full``, or ``VAE_COURSE_DEVICE``
            names a device torch cannot use.
    """
    mode = os.environ.get("VAE_COURSE_MODE", "full").strip().lower() or "full"
    if mode not in MODES:
        raise ValueError(f"VAE_COURSE_MODE: expected one of {MODES}, got {mode!r}")
    data_dir = os.environ.get("VAE_COURSE_DATA_DIR")
    return Settings(
        mode=mode,
        device=_device(os.environ.get("VAE_COURSE_DEVICE")),
        data_dir=Path(data_dir).expanduser() if data_dir else _default_data_dir(),
        offline=os.environ.get("VAE_COURSE_OFFLINE", "0").strip().lower() in ("1", "true", "yes"),
    )
