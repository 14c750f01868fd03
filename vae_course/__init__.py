"""vae_course: the companion package of the VAE course (from autoencoders to conditional VAEs).

Every notebook opens with ``cfg, mnist = vae_course.setup(seed=0)`` (``config.setup``).
"""
from vae_course.config import Mnist, settings, setup

__version__ = "0.1.0"
__all__ = ["Mnist", "settings", "setup", "__version__"]
