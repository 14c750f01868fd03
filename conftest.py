"""Test-wide settings: fast mode unless the caller chose otherwise. Environment variables set
here reach the notebook kernels that nbval starts, so the notebooks run in fast mode too."""
import os

os.environ.setdefault("VAE_COURSE_MODE", "fast")
