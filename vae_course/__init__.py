"""vae_course: the companion package of the VAE course (from autoencoders to conditional VAEs)."""
from vae_course.config import settings

__version__ = "0.1.0"
__all__ = ["settings", "__version__"]
