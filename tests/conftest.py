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



def _complete_build(out: Path) -> bool:
    """``out`` holds a fast build of every notebook in notebooks/ (its summary.json says so)."""
    import json

    summary = out / "summary.json"
    if not summary.is_file():
        return False
    built = json.loads(summary.read_text())
    names = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    return built.get("mode") == "fast" and set(built.get("notebooks", {})) == names


@pytest.fixture(scope="session")
def course_build(tmp_path_factory) -> Path:
    """The main job's build in fast mode: every notebook executed by ``scripts/build_course.py --out``
    (the main job's own code), with its reading page, figures and widget specs, and the model cache
    off, so every model is trained. Made once per test command: the determinism test compares it with
    nbval's run (which loaded the shared models), and the browser tests of the pages, the website and
    the slides read it. ``bash scripts/test.sh`` sets ``VAE_COURSE_TEST_BUILD`` to a folder its two
    steps share and starts the build there in the background, on the core the first step leaves free;
    this fixture waits for it (the build holds ``.build.lock``), and the browser step reuses it. A
    notebook that fails is reported by its own page test (and by nbval); the build goes on past it."""
    from vae_course import files

    shared = os.environ.get("VAE_COURSE_TEST_BUILD")
    out = Path(shared) if shared else tmp_path_factory.mktemp("course")
    out.mkdir(parents=True, exist_ok=True)
    with files.lock(out / ".build.lock"):   # scripts/test.sh may be building it now, beside step 1: wait for it
        complete = _complete_build(out)
    if not complete:
        # One notebook at a time, with the threads nbval's kernels have: the same arithmetic as nbval's run.
        env = {**os.environ, "VAE_COURSE_MODE": "fast", "VAE_COURSE_OFFLINE": "1", "VAE_COURSE_CACHE_DIR": "off"}
        run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_course.py"), "--out", str(out), "--jobs", "1"],
                             env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
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
