"""Test-wide settings. Environment variables set here reach the notebook kernels that nbval
starts, so the notebooks run in the same mode as the unit tests.

* fast mode, unless the caller chose otherwise;
* no download attempts: tests never touch the internet (the download code is tested against
  servers the tests start on 127.0.0.1, with explicit mirrors);
* the shared trained models (``vae_course.pretrained``) are cached in a folder of this test session,
  empty at its start, unless the caller chose one (``VAE_COURSE_CACHE_DIR``; scripts/test.sh shares
  one between its two steps): the first notebook that needs a model trains it, the next ones load it.

nbval's run of each notebook is recorded (``nbval_run``): tests/test_determinism.py runs each
notebook once more, with the cache off, and compares the two, instead of running it twice itself.
"""
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("VAE_COURSE_MODE", "fast")
os.environ.setdefault("VAE_COURSE_OFFLINE", "1")

_SESSION_CACHE = []   # the model cache folder this session made (removed at its end)
NBVAL_RUNS = {}       # notebook path -> {"outputs": {cell id: outputs}, "failed": bool}


def pytest_configure(config):
    config.addinivalue_line("markers", "after_notebooks: runs after nbval's notebook cells (uses their recorded run)")
    if not os.environ.get("VAE_COURSE_CACHE_DIR"):
        _SESSION_CACHE.append(tempfile.mkdtemp(prefix="vae_course-models-"))
        os.environ["VAE_COURSE_CACHE_DIR"] = _SESSION_CACHE[0]


def pytest_unconfigure(config):
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``after_notebooks`` run last (after nbval's cells, whose outputs they use).
    Skip the browser tests, with the reason, when scripts/test.sh could not set up a browser here
    (no Chromium or npm, not root); it reports that in one line. CI never sets this variable."""
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)  # stable
    reason = os.environ.get("VAE_COURSE_SKIP_BROWSER")
    if not reason:
        return
    skip = pytest.mark.skip(reason=f"browser test: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep the outputs of every notebook cell nbval runs (nbval's IPyNbCell.test_outputs)."""
    outcome = yield
    if call.when != "call" or type(item).__name__ != "IPyNbCell":
        return
    run = NBVAL_RUNS.setdefault(os.path.realpath(str(item.parent.fspath)), {"outputs": {}, "failed": False})
    run["outputs"][item.cell.get("id")] = item.test_outputs
    run["failed"] |= not outcome.get_result().passed or item.test_outputs is None


@pytest.fixture
def nbval_run():
    """``nbval_run(path)``: the notebook at ``path`` with the outputs of nbval's run in this session,
    or None when nbval did not run every code cell of it, or a cell failed."""
    import nbformat

    def executed(path):
        run = NBVAL_RUNS.get(os.path.realpath(str(path)))
        if run is None or run["failed"]:
            return None
        nb = nbformat.read(path, as_version=4)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        if any(cell.get("id") not in run["outputs"] for cell in code):
            return None
        for cell in code:
            cell.outputs = run["outputs"][cell.get("id")]
        return nb

    return executed
