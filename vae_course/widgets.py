"""Interactive widgets (ipywidgets): latent sliders for a decoder, class + latent sliders for a
CVAE, and a KL explorer.

Each widget is a ``VBox`` that keeps what it shows in plain attributes (``pixels``, ``kl``,
``png``), so tests and notebook cells can move a slider (``w.sliders[0].value = 1.5``) and check
that the picture changed, with no browser.
"""
from __future__ import annotations

import io
import math
import time

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vae_course import losses, plots


def png_bytes(pixels: np.ndarray, scale: int = 8) -> bytes:
    """A ``(H, W)`` array in [0, 1] -> PNG bytes, enlarged ``scale`` times (dark ink on white)."""
    big = np.kron(np.clip(pixels, 0, 1), np.ones((scale, scale)))
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, big, cmap="gray_r", vmin=0, vmax=1, format="png")
    return buf.getvalue()


class LatentSliders(widgets.VBox):
    """Sliders for latent dimensions (plus a digit selector for a CVAE) and the decoded image.

    Attributes:
        sliders: one ``FloatSlider`` per shown latent dimension.
        digit: a ``ToggleButtons`` for the class (CVAE only, else None).
        image: the ``ipywidgets.Image`` showing the decoded digit.
        pixels: ``(H, W)`` NumPy array now shown. z: ``(latent_dim,)`` tensor now decoded.
        last_update_ms: how long the last redraw took.
    """

    def __init__(self, model, dims=None, limit: float = 3.0, step: float = 0.05, scale: int = 8):
        super().__init__()
        self.model = model
        latent_dim = model.latent_dim
        dims = list(range(min(latent_dim, 8))) if dims is None else list(dims)
        for d in dims:
            if not (isinstance(d, int) and 0 <= d < latent_dim):
                raise ValueError(f"dims: expected latent indices in [0, {latent_dim - 1}], got {dims!r}")
        self.dims, self.scale = dims, scale
        self.z = torch.zeros(latent_dim)
        self.sliders = [widgets.FloatSlider(value=0.0, min=-limit, max=limit, step=step,
                                            description=f"z{d + 1}", continuous_update=True,
                                            readout_format=".2f") for d in dims]
        self.digit = None
        controls: list[widgets.Widget] = []
        if model.conditional:
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
        if self.model.conditional:
            y = torch.tensor([self.digit.value], dtype=torch.int64, device=z.device)
            out = self.model.decode(z, y)
        else:
            out = self.model.decode(z)
        self.pixels = plots.as_image_array(self.model.to_pixels(out))[0]
        self.image.value = png_bytes(self.pixels, self.scale)
        self.last_update_ms = 1000 * (time.perf_counter() - start)
        label = f"digit {self.digit.value}, " if self.digit is not None else ""
        self.caption.value = f"<small>{label}z = [{', '.join(f'{v:.2f}' for v in self.z.tolist()[:8])}]</small>"


def latent_sliders(model, dims=None, limit: float = 3.0) -> LatentSliders:
    """Sliders over ``model``'s latent dimensions (the first 8, or ``dims``) and the decoded digit.

    Works with a ``VAE`` or ``Autoencoder`` (any model with ``decode(z)``); for a ``CVAE`` a digit
    selector is added (see ``cvae_sliders``). ``limit``: sliders span [-limit, limit].
    """
    return LatentSliders(model, dims=dims, limit=limit)


def cvae_sliders(model, dims=None, limit: float = 3.0) -> LatentSliders:
    """Class + latent sliders for a ``CVAE``: pick the digit, move z (the style)."""
    if not getattr(model, "conditional", False):
        raise TypeError(f"model: expected a CVAE (conditional model), got {type(model).__name__}")
    return LatentSliders(model, dims=dims, limit=limit)


def gaussian_kl_1d(mu: float, sigma: float) -> float:
    """KL(N(mu, sigma^2) || N(0, 1)) = 1/2 (sigma^2 - ln sigma^2 - 1 + mu^2), in nats: the
    package's ``losses.gaussian_kl`` for one latent dimension."""
    mu_t = torch.tensor([[float(mu)]], dtype=torch.float64)
    logvar_t = torch.tensor([[2.0 * math.log(sigma)]], dtype=torch.float64)
    return float(losses.gaussian_kl(mu_t, logvar_t))


class KLExplorer(widgets.VBox):
    """Sliders for mu and sigma of q(z) = N(mu, sigma^2); shows q against the prior N(0, 1) and
    the closed-form KL in nats.

    Attributes: ``mu``, ``sigma`` (FloatSliders), ``kl`` (float, nats), ``png`` (bytes of the
    current figure), ``image`` (the Image widget), ``last_update_ms``.
    """

    def __init__(self, mu: float = 0.0, sigma: float = 1.0):
        super().__init__()
        self.mu = widgets.FloatSlider(value=mu, min=-3.0, max=3.0, step=0.05, description="μ")
        self.sigma = widgets.FloatSlider(value=sigma, min=0.1, max=3.0, step=0.05, description="σ")
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
        self.kl = gaussian_kl_1d(mu, sigma)
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
