"""Test-wide settings. Environment variables set here reach the notebook kernels that nbval
starts, so the notebooks run in the same mode as the unit tests.

* fast mode, unless the caller chose otherwise;
* no download attempts: tests never touch the internet (the download code is tested against
  servers the tests start on 127.0.0.1, with explicit mirrors).
"""
import os

os.environ.setdefault("VAE_COURSE_MODE", "fast")
os.environ.setdefault("VAE_COURSE_OFFLINE", "1")


def pytest_collection_modifyitems(config, items):
    """Skip the browser tests, with the reason, when scripts/test.sh could not set up a browser here
    (no Chromium or npm, not root); it reports that in one line. CI never sets this variable."""
    reason = os.environ.get("VAE_COURSE_SKIP_BROWSER")
    if not reason:
        return
    import pytest

    skip = pytest.mark.skip(reason=f"browser test: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
