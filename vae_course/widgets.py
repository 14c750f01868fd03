"""Interactive widgets (ipywidgets): latent sliders for a decoder, class + latent sliders for a
CVAE, and a KL explorer.

Each widget is a ``VBox`` that keeps what it shows in plain attributes (``pixels``, ``kl``,
``png``), so tests and notebook cells can move a slider (``w.sliders[0].value = 1.5``) and check
that the picture changed, with no browser.

A value the learner types is shown exactly or refused, never clamped: a slider set outside its
range raises ``ValueError`` naming the slider and its range (ipywidgets would quietly show the
nearest end instead), and ``kl_explorer(mu=5)`` widens the slider's range to include 5.
"""
from __future__ import annotations

import io
import math
import time

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
import traitlets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_course import gaussian, models, plots, validate


def png_bytes(pixels: np.ndarray, scale: int = 8) -> bytes:
    """A ``(H, W)`` array in [0, 1] -> PNG bytes, enlarged ``scale`` (>= 1) times (dark ink on white)."""
    scale = validate.positive_int(scale, "scale")
    pixels = np.asarray(pixels, dtype=float) if not isinstance(pixels, torch.Tensor) else pixels.detach().cpu().double().numpy()
    if pixels.ndim != 2:
        raise ValueError(f"pixels: expected one image of shape (H, W), got shape {pixels.shape}")
    plots.as_image_array(pixels[None], "pixels")  # finite, in [0, 1]: nothing is clipped
    big = np.kron(pixels, np.ones((scale, scale)))
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, big, cmap="gray_r", vmin=0, vmax=1, format="png")
    return buf.getvalue()


class StrictFloatSlider(widgets.FloatSlider):
    """A ``FloatSlider`` that refuses a value outside [min, max] (``ValueError`` naming the slider
    and its range) where ipywidgets' own would quietly show the nearest end of the range."""

    argument = ""  # how messages name the slider, e.g. "sliders[0] (z1)"; default: its description

    @traitlets.validate("value")
    def _validate_value(self, proposal):
        name = self.argument or self.description
        value = validate.real(proposal["value"], name)
        if not self.min <= value <= self.max:
            raise ValueError(f"{name}: expected a value in [{self.min:g}, {self.max:g}] (the slider's "
                             f"range; nothing is clamped), got {value!r}")
        return value


class LatentSliders(widgets.VBox):
    """Sliders for latent dimensions (plus a digit selector for a CVAE) and the decoded image.

    Args: ``dims``: different latent indices below ``model.latent_dim`` (default: the first 8);
    ``limit`` > 0: each slider spans [-limit, limit]; ``step`` > 0: the sliders' step;
    ``scale`` >= 1: the image is enlarged that many times.

    Attributes:
        sliders: one ``StrictFloatSlider`` per shown latent dimension (a value outside
            [-limit, limit] is refused, not clamped).
        digit: a ``ToggleButtons`` for the class (CVAE only, else None).
        image: the ``ipywidgets.Image`` showing the decoded digit.
        pixels: ``(H, W)`` NumPy array now shown. z: ``(latent_dim,)`` tensor now decoded.
        last_update_ms: how long the last redraw took.
    """

    def __init__(self, model, dims=None, limit: float = 3.0, step: float = 0.05, scale: int = 8):
        # Every argument is checked before the widget exists: a refused call leaves no half-built
        # widget registered in the kernel (the site's export walks every live widget).
        model = _check_model(model)
        latent_dim = model.latent_dim
        dims = list(range(min(latent_dim, 8))) if dims is None else _check_dims(dims, latent_dim)
        limit, step = validate.positive_float(limit, "limit"), validate.positive_float(step, "step")
        scale = validate.positive_int(scale, "scale")
        super().__init__()
        self.model, self.dims, self.scale = model, dims, scale
        self.z = torch.zeros(latent_dim)
        self.sliders = [StrictFloatSlider(value=0.0, min=-limit, max=limit, step=step,
                                            description=f"z{d + 1}", continuous_update=True,
                                            readout_format=".2f") for d in dims]
        for i, (d, s) in enumerate(zip(dims, self.sliders)):
            s.argument = f"sliders[{i}] (z{d + 1})"
        self.digit = None
        controls: list[widgets.Widget] = []
        if model.num_classes:  # a model that takes labels: a digit selector
            self.digit = widgets.ToggleButtons(options=list(range(model.num_classes)), value=0,
                                               description="digit", style={"button_width": "32px"})
            self.digit.observe(self._on_change, names="value")
            controls.append(self.digit)
        for s in self.sliders:
            s.observe(self._on_change, names="value")
        reset = widgets.Button(description="reset z = 0", icon="undo")
        reset.on_click(lambda _: self.reset())
        self.image = widgets.Image(format="png", width=28 * scale, height=28 * scale)
        self.caption = widgets.HTML()
        controls += [*self.sliders, reset]
        self.children = [widgets.HBox([widgets.VBox(controls), widgets.VBox([self.image, self.caption])])]
        self.update()

    def reset(self) -> None:
        for s in self.sliders:
            s.value = 0.0

    def _on_change(self, change) -> None:
        self.update()

    @torch.no_grad()
    def update(self) -> None:
        """Decode the sliders' z and redraw the image."""
        start = time.perf_counter()
        for d, s in zip(self.dims, self.sliders):
            self.z[d] = s.value
        z = self.z.unsqueeze(0).to(self.model.device)
        self.model.eval()
        y = None if self.digit is None else torch.tensor([self.digit.value], dtype=torch.int64, device=z.device)
        out = self.model.decode(z, y)
        self.pixels = plots.as_image_array(self.model.to_pixels(out))[0]
        self.image.value = png_bytes(self.pixels, self.scale)
        self.last_update_ms = 1000 * (time.perf_counter() - start)
        label = f"digit {self.digit.value}, " if self.digit is not None else ""
        self.caption.value = f"<small>{label}z = [{', '.join(f'{v:.2f}' for v in self.z.tolist()[:8])}]</small>"


def _check_model(model):
    """``model``: one of the course's models (``vae_course.models``), which all decode ``(z, y)``."""
    if not isinstance(model, models._Base):
        raise TypeError(f"model: expected a model of vae_course.models (one of {tuple(models.MODELS)}), "
                        f"got {type(model).__name__}")
    return model


def _check_dims(dims, latent_dim: int) -> list[int]:
    """``dims``: at least one latent index, all different, each in [0, latent_dim)."""
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
        raise ValueError(f"dims: expected a list of latent indices in [0, {latent_dim - 1}], got {dims!r}")
    if isinstance(dims, torch.Tensor):
        dims = dims.reshape(-1)  # a 1-D tensor of indices: each one a 0-d tensor below
    checked = [validate.integer(d, f"dims[{i}]", low=0, high=latent_dim - 1) for i, d in enumerate(dims)]
    if not checked or len(set(checked)) != len(checked):
        raise ValueError(f"dims: expected at least one latent index, all different, in [0, {latent_dim - 1}], got {checked}")
    return checked


def latent_sliders(model, dims=None, limit: float = 3.0) -> LatentSliders:
    """Sliders over ``model``'s latent dimensions (the first 8, or ``dims``) and the decoded digit.

    Works with a ``VAE`` or ``Autoencoder`` (any model with ``decode(z)``); for a ``CVAE`` a digit
    selector is added (see ``cvae_sliders``). ``limit``: sliders span [-limit, limit].
    """
    return LatentSliders(model, dims=dims, limit=limit)


def cvae_sliders(model, dims=None, limit: float = 3.0) -> LatentSliders:
    """Class + latent sliders for a ``CVAE``: pick the digit, move z (the style)."""
    if not _check_model(model).num_classes:
        raise TypeError(f"model: expected a CVAE (a model that takes labels), got {type(model).__name__}")
    return LatentSliders(model, dims=dims, limit=limit)


class KLExplorer(widgets.VBox):
    """Sliders for mu and sigma of q(z) = N(mu, sigma^2); shows q against the prior N(0, 1) and
    the closed-form KL in nats.

    Args: the starting ``mu`` (finite) and ``sigma`` (> 0). The sliders span mu in [-3, 3] and
    sigma in [0.1, 3], widened to include the values given, which are shown exactly.

    Attributes: ``mu``, ``sigma`` (StrictFloatSliders: a value set outside their range is refused,
    not clamped), ``kl`` (float, nats), ``png`` (bytes of the current figure), ``image`` (the
    Image widget), ``last_update_ms``.
    """

    def __init__(self, mu: float = 0.0, sigma: float = 1.0):
        mu, sigma = validate.real(mu, "mu"), validate.positive_float(sigma, "sigma")  # checked before the widget exists
        super().__init__()
        mu_limit = max(3.0, abs(mu))  # widened, never clamped: the slider shows what was typed
        self.mu = StrictFloatSlider(value=mu, min=-mu_limit, max=mu_limit, step=0.05, description="μ")
        self.sigma = StrictFloatSlider(value=sigma, min=min(0.1, sigma), max=max(3.0, sigma), step=0.05,
                                       description="σ")
        self.mu.argument, self.sigma.argument = "mu (μ)", "sigma (σ)"
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        # A Figure not attached to pyplot: it is never shown twice by the inline backend.
        self.figure = Figure(figsize=(6.0, 3.4), dpi=80)
        # One Agg canvas for the figure's life: savefig then reuses its renderer, and with it the
        # cache of typeset labels (a fresh canvas per move would typeset every label again).
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        for s in (self.mu, self.sigma):
            s.observe(lambda _: self.update(), names="value")
        self.children = [widgets.HBox([self.mu, self.sigma]), self.readout, self.image]
        # Lay the figure out once: the axis labels and tick widths do not change with mu and
        # sigma, and tight_layout on every move would cost ~15 ms of the 100 ms budget.
        plots.draw_gaussians(self.ax, mu, sigma)
        self.figure.tight_layout()
        # tight_layout leaves a layout engine that savefig would run again (one more full draw)
        # on every move; without it the axes keep the place just computed.
        self.figure.set_layout_engine(None)
        self.update()

    def update(self) -> None:
        start = time.perf_counter()
        mu, sigma = self.mu.value, self.sigma.value
        self.kl = gaussian.kl_1d(mu, sigma)
        plots.draw_gaussians(self.ax, mu, sigma, self.kl)
        buf = io.BytesIO()
        # Light PNG compression: the default level takes ~20 ms more per move for a few kB less.
        self.figure.savefig(buf, format="png", pil_kwargs={"compress_level": 1})
        self.png = buf.getvalue()
        self.image.value = self.png
        self.readout.value = (f"KL = ½(σ² − ln σ² − 1 + μ²) = ½({sigma ** 2:.3f} − {math.log(sigma ** 2):.3f} − 1 + "
                              f"{mu ** 2:.3f}) = <b>{self.kl:.3f} nats</b>")
        self.last_update_ms = 1000 * (time.perf_counter() - start)


def kl_explorer(mu: float = 0.0, sigma: float = 1.0) -> KLExplorer:
    """The KL explorer: move μ and σ, watch q(z) against N(0, 1) and the KL in nats."""
    return KLExplorer(mu, sigma)
