"""Test-wide settings. Environment variables set here reach the notebook kernels that nbval
starts, so the notebooks run in the same mode as the unit tests.

* fast mode, unless the caller chose otherwise;
* no download attempts: tests never touch the internet (the download code is tested against
  servers the tests start on 127.0.0.1, with explicit mirrors).
"""
import os

os.environ.setdefault("VAE_COURSE_MODE", "fast")
os.environ.setdefault("VAE_COURSE_OFFLINE", "1")
