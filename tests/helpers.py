"""Small helpers shared by the unit tests."""
import os
from pathlib import Path

import torch


def gen(seed: int) -> torch.Generator:
    """A CPU random generator with a fixed seed (tests draw their data from it)."""
    return torch.Generator().manual_seed(seed)


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
