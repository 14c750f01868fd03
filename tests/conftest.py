"""Shared fixtures for the unit tests."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 3600  # a hang guard: the fast build takes ~2 min on 2 cores


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Unit tests use tiny tensors: one thread is fastest, and never waits for a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(scope="session")
def course_build(tmp_path_factory) -> Path:
    """The main job's build in fast mode, in a temporary folder: every notebook executed by
    ``scripts/build_course.py --out`` (the main job's own code), with its reading page, figures and
    widget specs. Built once for the browser tests of the pages and of the website. A notebook that
    fails is reported by its own page test (and by nbval); the build goes on past it."""
    out = tmp_path_factory.mktemp("course")
    env = {**os.environ, "VAE_COURSE_MODE": "fast", "VAE_COURSE_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_course.py"), "--out", str(out)], env=env,
                         capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert (out / "summary.json").is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium for one test module's browser tests (tests/helpers.py: launch_chromium)."""
    from helpers import launch_chromium

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()
