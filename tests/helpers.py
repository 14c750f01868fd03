"""Small helpers shared by the unit tests."""
import os
from pathlib import Path

import torch


def gen(seed: int) -> torch.Generator:
    """A CPU random generator with a fixed seed (tests draw their data from it)."""
    return torch.Generator().manual_seed(seed)


def uniform(g: torch.Generator, shape, low: float, high: float) -> torch.Tensor:
    """float64 values drawn uniformly from [low, high) with the generator ``g``."""
    return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)


def assert_finite_with_finite_grads(value: torch.Tensor, *leaves: torch.Tensor) -> None:
    """``value`` is finite, and so are the gradients of its sum with respect to ``leaves``."""
    assert torch.isfinite(value).all(), value
    value.sum().backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all(), leaf.grad


# A tiny data set and model for tests that train (tests/test_train_objectives.py, tests/test_evaluate_latents.py).
TINY_SHAPE = (1, 4, 4)


def tiny_dataset(n: int = 64, seed: int = 0):
    """Binary 4x4 images: noisy copies of two prototypes (learnable), labels = prototype."""
    g = gen(seed)
    protos = torch.tensor([[1.0] * 8 + [0.0] * 8, [0.0, 1.0] * 8]).view(2, *TINY_SHAPE)
    y = torch.randint(0, 2, (n,), generator=g)
    flip = torch.rand(n, *TINY_SHAPE, generator=g) < 0.05
    return torch.where(flip, 1 - protos[y], protos[y]), y


def tiny_vae(cls=None, seed: int = 0, **kw):
    """A small model (default ``models.VAE``) for 4x4 images: hidden 16, latent 3."""
    from vae_course import models

    torch.manual_seed(seed)
    return (cls or models.VAE)(**{"image_shape": TINY_SHAPE, "hidden_dims": (16,), "latent_dim": 3, **kw})


def quick_fit(model, x, y=None, **kw):
    """``train.fit`` for 12 optimizer steps of batch 16 (3 passes over 64 images) on the CPU,
    without a progress bar."""
    from vae_course import train

    kw = {"steps": 12, "batch_size": 16, "lr": 1e-2, "device": "cpu", "progress": False, **kw}
    return train.fit(model, x, y, **kw)


def raises_naming(exc, name, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` raises ``exc`` with ``name`` (the argument) in its message."""
    import pytest

    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert name in str(info.value), str(info.value)


def kill_when(proc, condition, timeout_s: float = 180.0) -> None:
    """SIGKILL the child process ``proc`` as soon as ``condition()`` holds (a fault-injection test:
    the process dies mid-write). Fails if the child exits first or ``timeout_s`` passes (a guard
    against a hung test only: generous, so a machine 3x slower than this one passes too)."""
    import signal
    import time

    deadline = time.monotonic() + timeout_s
    try:
        while not condition():
            assert proc.poll() is None, f"the child exited (code {proc.returncode}) before the condition held"
            assert time.monotonic() < deadline, "timed out waiting for the child"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


# Debian's Chromium, driven by Playwright (scripts/setup_browser.sh installs both; Playwright never
# downloads a browser). The flags keep it from calling Google's hosts on this closed network.
CHROMIUM = os.environ.get("VAE_COURSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    """Start headless Chromium from ``CHROMIUM``; fail (not skip) with the fix when it is missing."""
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup_browser.sh (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
