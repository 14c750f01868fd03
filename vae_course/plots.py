"""One plotting helper per figure kind in the course. Each returns its matplotlib ``Figure`` so a
notebook cell can check what it shows (``fig.axes[0].get_title()``, the plotted data, ...).

Images may be torch tensors or NumPy arrays of shape ``(N, 1, H, W)``, ``(N, H, W)`` or
``(N, H*W)`` (square images), with pixel values in [0, 1].

Every helper checks its arguments first: a wrong one raises ``ValueError`` or ``TypeError`` naming
it, what was expected and what was received; nothing is clipped or dropped silently (pixels
outside [0, 1], a non-positive value on a log axis and a dimension beyond the latent size are
refused). Counts and numbers may be Python, NumPy or 0-d tensor scalars.
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from vae_course import gaussian, validate

# The course's colours read for colour-blind learners: matplotlib's "petroff10" palette (Petroff 2021),
# for the ten digits and as every figure's colour cycle (C0, C1, ...). Digits also differ by marker
# shape, so a scatter reads without colour at all. Images use one grey scale (ink on white).
DIGIT_COLORS = tuple(plt.style.library["petroff10"]["axes.prop_cycle"].by_key()["color"])
DIGIT_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">")
plt.rcParams["axes.prop_cycle"] = plt.cycler(color=DIGIT_COLORS)


def as_image_array(images, name: str = "images") -> np.ndarray:
    """Images (tensor or array) -> NumPy ``(N, H, W)`` float array in [0, 1], N >= 1.

    Raises ``ValueError`` naming ``name`` for another shape, an empty batch, NaN or inf, or pixel
    values outside [0, 1] (they would be drawn clipped); ``TypeError`` for what is not numbers."""
    if isinstance(images, torch.Tensor):
        if images.is_complex() or images.is_meta:
            raise TypeError(f"{name}: expected real pixel values, got a tensor of dtype {images.dtype} on {images.device}")
        images = images.detach().cpu().float().numpy()
    try:
        images = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected images as a tensor or array of numbers, got {type(images).__name__}") from None
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    elif images.ndim == 2 and images.shape[1] > 0:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"{name}: expected (N, H*W) with square images, got {images.shape}")
        images = images.reshape(-1, side, side)
    elif images.ndim != 3:
        raise ValueError(f"{name}: expected shape (N, 1, H, W), (N, H, W) or (N, H*W), got {images.shape}")
    if 0 in images.shape:
        raise ValueError(f"{name}: expected at least one image of at least one pixel, got shape {images.shape}")
    if not np.isfinite(images).all():
        raise ValueError(f"{name}: expected finite pixel values, got {int((~np.isfinite(images)).sum())} NaN or inf")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name}: expected pixel values in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return images


def _mapping(value, name: str, example: str) -> Mapping:
    """A non-empty mapping (a dict of named series, histories, images ...)."""
    if not isinstance(value, Mapping) or not value:
        got = f"an empty {type(value).__name__}" if isinstance(value, Mapping) else f"{type(value).__name__} {value!r:.60}"
        raise ValueError(f"{name}: expected a non-empty dict such as {example}, got {got}")
    return value


def _index_pair(dims, name: str, size: int) -> tuple[int, int]:
    """Two different indices in [0, size) (the two latent dimensions a 2-D figure shows)."""
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) != 2:
        raise ValueError(f"{name}: expected two different latent indices in [0, {size - 1}] such as (0, 1), got {dims!r}")
    pair = tuple(validate.integer(d, f"{name}[{i}]", low=0, high=size - 1) for i, d in enumerate(dims))
    if pair[0] == pair[1]:
        raise ValueError(f"{name}: expected two different latent indices in [0, {size - 1}], got {dims!r}")
    return pair


def _values(value, name: str) -> np.ndarray:
    """A tensor, array or sequence of numbers as a 1-D float array (NaN allowed: a gap in a line)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double()
    try:
        array = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(value).__name__} {value!r:.60}") from None
    return array


def tile(images, ncols: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``(N, H, W)`` images into one ``(rows*(H+pad)-pad, ncols*(W+pad)-pad)`` array.

    ``ncols`` >= 1 images per row; ``pad`` >= 0 pixels between them, of value ``pad_value`` in [0, 1]."""
    images = as_image_array(images)
    ncols = validate.positive_int(ncols, "ncols")
    pad = validate.integer(pad, "pad", low=0)
    pad_value = validate.real(pad_value, "pad_value", low=0.0, high=1.0)
    n, h, w = images.shape
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return canvas


def image_grid(images, ncols: int = 10, title: str = "", labels: Sequence | None = None,
               size: float = 0.9) -> Figure:
    """A grid of digits, ``ncols`` (>= 1; fewer when there are fewer images) per row, optional
    per-image ``labels`` (one per image) shown above each; ``size``: inches per image."""
    arr = as_image_array(images)
    n = len(arr)
    ncols = min(validate.positive_int(ncols, "ncols"), n)
    size = validate.positive_float(size, "size")
    if labels is not None and (not hasattr(labels, "__len__") or isinstance(labels, str) or len(labels) != n):
        got = f"{len(labels)} labels" if hasattr(labels, "__len__") and not isinstance(labels, str) else repr(labels)
        raise ValueError(f"labels: expected one label per image ({n}), got {got}")
    nrows = math.ceil(n / ncols)
    extra = (0.4 if title else 0) + (0.2 * nrows if labels is not None else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + extra), squeeze=False,
                             layout="constrained")  # leaves room for the title above the labels
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=9, pad=2)
    if title:
        fig.suptitle(title)
    return fig


def image_rows(rows: Mapping[str, object], title: str = "", size: float = 0.9) -> Figure:
    """Several rows of images with a name on the left of each (e.g. original / noisy / denoised).

    ``rows``: ``{"row name": images}``, at least one row; ``size``: inches per image."""
    _mapping(rows, "rows", '{"original": x, "reconstruction": x_hat}')
    size = validate.positive_float(size, "size")
    arrays = {name: as_image_array(imgs, f"rows[{name!r}]") for name, imgs in rows.items()}
    ncols = max(len(a) for a in arrays.values())
    fig, axes = plt.subplots(len(arrays), ncols, figsize=(size * ncols + 1.0, size * len(arrays) + 0.4),
                             squeeze=False)
    for r, (name, arr) in enumerate(arrays.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(arr):
                ax.imshow(arr[c], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout(pad=0.3)
    return fig


def reconstructions(originals, reconstructed, n: int = 10, title: str = "Reconstructions") -> Figure:
    """Originals above their reconstructions (first ``n`` >= 1 of each)."""
    n = validate.positive_int(n, "n")
    originals, reconstructed = as_image_array(originals, "originals"), as_image_array(reconstructed, "reconstructed")
    return image_rows({"original": originals[:n], "reconstruction": reconstructed[:n]}, title=title)


def latent_scatter(z, labels, title: str = "Latent codes by digit", dims: tuple[int, int] = (0, 1),
                   ax: plt.Axes | None = None, max_points: int = 5000) -> Figure:
    """2-D scatter of latent codes ``z (N, J)`` coloured by digit label ``(N,)`` (integers).

    ``dims``: the two latent dimensions shown (different, below J); the first ``max_points``
    (>= 1) codes are drawn."""
    z = z.detach().cpu().double().numpy() if isinstance(z, torch.Tensor) else np.asarray(z, dtype=float)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ValueError(f"z: expected latent codes of shape (N, J) with N >= 1 and J >= 2, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError(f"z: expected finite codes, got {int((~np.isfinite(z)).sum())} NaN or inf")
    if labels.shape != (z.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"labels: expected one integer label per code, shape ({z.shape[0]},), "
                         f"got shape {labels.shape} of dtype {labels.dtype}")
    dims = _index_pair(dims, "dims", z.shape[1])
    max_points = validate.positive_int(max_points, "max_points")
    z, labels = z[:max_points], labels[:max_points]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 5.2))
    else:
        fig = ax.figure
    for digit in np.unique(labels):
        pts = z[labels == digit]
        ax.scatter(pts[:, dims[0]], pts[:, dims[1]], s=16, alpha=0.7, color=DIGIT_COLORS[int(digit) % 10],
                   marker=DIGIT_MARKERS[int(digit) % 10], linewidths=0, label=str(digit), rasterized=True)
    for digit in np.unique(labels):  # each digit's name at the median of its codes: no colour needed to read it
        middle = np.median(z[labels == digit][:, list(dims)], axis=0)
        ax.text(*middle, str(digit), fontsize=13, fontweight="bold", ha="center", va="center", color="black",
                path_effects=[patheffects.withStroke(linewidth=3, foreground="white")])
    ax.set_xlabel(f"$z_{dims[0] + 1}$")
    ax.set_ylabel(f"$z_{dims[1] + 1}$")
    ax.set_title(title)
    ax.legend(title="digit", markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def gaussian_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """``n`` points evenly spaced in probability between ``low`` and ``high`` mapped through the
    standard normal inverse CDF: equal prior mass between neighbours (Kingma & Welling 2014, Fig. 4).

    ``n`` >= 1 points (``(n,)`` float32); ``0 < low < high < 1``."""
    n = validate.positive_int(n, "n")
    low, high = validate.probability(low, "low"), validate.probability(high, "high")
    if not low < high:
        raise ValueError(f"low, high: expected low < high (0 < low < high < 1), got low={low:g}, high={high:g}")
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, n))


def manifold_grid(decode: Callable[[torch.Tensor], torch.Tensor], n: int = 20, latent_dim: int = 2,
                  dims: tuple[int, int] = (0, 1), title: str = "Decoded latent grid (Gaussian quantiles)",
                  tile_lines: bool = False) -> Figure:
    """Decode an ``n x n`` grid over two latent dimensions (others 0) at Gaussian quantiles.

    ``decode`` maps ``(M, latent_dim)`` latents to ``(M, 1, H, W)`` pixels in [0, 1].
    ``n`` >= 2 points per side; ``latent_dim`` >= 2; ``dims``: two different dimensions below it.
    ``tile_lines`` draws thin lines between the decoded images (for tiny ones, e.g. 3x3).
    """
    validate.callable_(decode, "decode")
    n = validate.integer(n, "n", low=2)
    latent_dim = validate.integer(latent_dim, "latent_dim", low=2)
    dims = _index_pair(dims, "dims", latent_dim)
    q = gaussian_quantiles(n)
    z = torch.zeros(n * n, latent_dim)
    # Row r from the top shows the largest z2, as on a plot's y axis.
    z[:, dims[0]] = q.repeat(n)
    z[:, dims[1]] = q.flip(0).repeat_interleave(n)
    pixels = as_image_array(decode(z), "decode(z)")
    if len(pixels) != n * n:
        raise ValueError(f"decode: expected one image per latent point, {n * n} for n={n}, got {len(pixels)}")
    h, w = pixels.shape[1:]
    canvas = tile(pixels, n, pad=0)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    # Ticks symmetric about the centre: the ends and the cells a quarter of the way in.
    idx = np.unique([0, n // 4, n - 1 - n // 4, n - 1])
    centres = np.arange(n) * w + (w - 1) / 2  # pixel k spans k - 0.5 .. k + 0.5
    if tile_lines:
        for k in range(1, n):
            ax.axvline(k * w - 0.5, color="tab:blue", lw=0.8)
            ax.axhline(k * h - 0.5, color="tab:blue", lw=0.8)
    values = q.tolist()
    ax.set_xticks(centres[idx], [f"{values[i]:.2f}" for i in idx])
    ax.set_yticks(centres[idx], [f"{values[n - 1 - i]:.2f}" for i in idx])
    ax.set_xlabel(f"$z_{dims[0] + 1}$ (Gaussian quantiles 5%..95%)")
    ax.set_ylabel(f"$z_{dims[1] + 1}$")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def interpolation(decode: Callable[[torch.Tensor], torch.Tensor], z_start: torch.Tensor, z_end: torch.Tensor,
                  steps: int = 10, title: str = "Linear interpolation in latent space") -> Figure:
    """Decode ``steps`` (>= 2) points on the straight line from ``z_start`` to ``z_end`` (each
    ``(J,)``, finite; a batch of one ``(1, J)`` is accepted)."""
    validate.callable_(decode, "decode")
    ends = []
    for name, value in (("z_start", z_start), ("z_end", z_end)):
        value = validate.floating(torch.as_tensor(value) if isinstance(value, np.ndarray) else value, name)
        if value.numel() == 0 or value.dim() not in (1, 2) or (value.dim() == 2 and value.shape[0] != 1):
            raise ValueError(f"{name}: expected one latent code of shape (J,), got shape {tuple(value.shape)}")
        ends.append(validate.finite(value.detach(), name).reshape(1, -1).cpu())
    if ends[0].shape != ends[1].shape:
        raise ValueError(f"z_start and z_end: expected the same latent size, got {ends[0].shape[1]} and {ends[1].shape[1]}")
    steps = validate.integer(steps, "steps", low=2)
    t = torch.linspace(0, 1, steps, dtype=ends[0].dtype).unsqueeze(1)
    z = (1 - t) * ends[0] + t * ends[1]
    pixels = as_image_array(decode(z), "decode(z)")
    if len(pixels) != steps:
        raise ValueError(f"decode: expected one image per point, {steps} for steps={steps}, got {len(pixels)}")
    return image_grid(pixels, ncols=steps, title=title, labels=[f"t={v:.2f}" for v in t.squeeze(1).tolist()])


PART_TITLES = {"total": "total: negative ELBO", "reconstruction": "reconstruction: −log p(x|z)",
               "kl": "KL(q(z|x) ‖ p(z))"}


def loss_curves(histories: Mapping[str, object], parts: Sequence[str] = ("total",),
                title: str = "Training curves", ylabel: str = "nats per example") -> Figure:
    """Loss per epoch for one or more ``History`` objects (``{"name": history}``), train solid and
    test dashed, one panel per loss part (``parts``: names such as ``("total", "kl")``; one name
    alone, ``"kl"``, is one panel)."""
    parts = (parts,) if isinstance(parts, str) else tuple(parts)
    _check_histories(histories, parts)
    fig, axes = plt.subplots(1, len(parts), figsize=(5.2 * len(parts), 3.8), squeeze=False)
    for ax, part in zip(axes.flat, parts):
        for i, (name, h) in enumerate(histories.items()):
            color = f"C{i}"
            epochs = np.arange(1, len(h.train[part]) + 1)
            ax.plot(epochs, h.train[part], color=color, label=f"{name} (train)")
            if h.test[part]:
                ax.plot(epochs, h.test[part], color=color, linestyle="--", label=f"{name} (test)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 1.5" on short runs
        ax.set_ylabel(ylabel)
        ax.set_title(PART_TITLES.get(part, part) if len(parts) > 1 else title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if len(parts) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _check_histories(histories, parts: Sequence[str]) -> None:
    """At least one history, at least one part, and every history has every part recorded."""
    _mapping(histories, "histories", '{"VAE": history}')
    if not parts:
        raise ValueError("parts: expected at least one loss part such as 'total', got none")
    for name, h in histories.items():
        train = getattr(h, "train", None)
        if not isinstance(train, Mapping):
            raise TypeError(f"histories[{name!r}]: expected a History (from fit), got {type(h).__name__}")
        for part in parts:
            if part not in train or not len(train[part]):
                raise ValueError(f"parts: expected loss parts that histories[{name!r}] recorded "
                                 f"({', '.join(k for k in train if len(train[k]))}), got {part!r}")


def normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """The density of N(mu, sigma^2) at ``x`` (sigma > 0), an array of ``x``'s shape: the exp of
    ``gaussian.log_prob``."""
    points = torch.as_tensor(np.asarray(x, dtype=np.float64))[..., None]  # one 1-D point per value
    return np.exp(gaussian.log_prob(points, float(mu), 2.0 * math.log(sigma)).numpy())


def draw_gaussians(ax: plt.Axes, mu: float, sigma: float, kl: float | None = None, xlim: float = 6.0) -> None:
    """Draw q = N(mu, sigma^2) against the prior N(0, 1) on ``ax`` (used by the KL explorer).

    ``mu`` finite, ``sigma`` > 0, ``kl`` (nats, shown in the title) finite or None; the x axis
    spans [-xlim, xlim]."""
    mu, sigma = validate.real(mu, "mu"), validate.positive_float(sigma, "sigma")
    kl = None if kl is None else validate.real(kl, "kl")
    xlim = validate.positive_float(xlim, "xlim")
    x = np.linspace(-xlim, xlim, 600)
    ax.clear()
    ax.fill_between(x, normal_pdf(x, 0.0, 1.0), color="0.75", label="prior $p(z)=\\mathcal{N}(0,1)$")
    ax.plot(x, normal_pdf(x, mu, sigma), color="C3", lw=2, label=f"$q(z)=\\mathcal{{N}}({mu:.2f},\\,{sigma:.2f}^2)$")
    ax.set_xlim(-xlim, xlim)
    ax.set_ylim(0, max(1.05 * normal_pdf(mu, mu, sigma), 0.45))
    ax.set_xlabel("$z$")
    ax.set_ylabel("density")
    ax.set_title("KL(q || p) = " + (f"{kl:.3f} nats" if kl is not None else "?"))
    ax.legend(loc="upper left", fontsize=8, frameon=False)


def gaussian_densities(params: Sequence[tuple[float, float]], title: str = "q(z) against the prior",
                       ncols: int = 3) -> Figure:
    """One panel per ``(mu, sigma)`` pair, ``ncols`` per row: q against N(0, 1), with the
    closed-form KL in the title. ``params``: at least one pair, mu finite and sigma > 0."""
    if isinstance(params, (str, bytes, Mapping)) or not hasattr(params, "__len__") or not len(params):
        raise ValueError(f"params: expected a non-empty list of (mu, sigma) pairs such as [(0, 1), (1, 0.5)], got {params!r:.60}")
    for i, pair in enumerate(params):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"params[{i}]: expected a (mu, sigma) pair, got {pair!r}")
        validate.real(pair[0], f"params[{i}] mu"), validate.positive_float(pair[1], f"params[{i}] sigma")
    ncols = min(validate.positive_int(ncols, "ncols"), len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    for ax, (mu, sigma) in zip(axes.flat, params):
        draw_gaussians(ax, mu, sigma, gaussian.kl_1d(mu, sigma))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def line_plot(x, series: Mapping[str, object], xlabel: str, ylabel: str, title: str,
              logx: bool = False, logy: bool = False, markers: bool = True) -> Figure:
    """Several named curves over the same x (e.g. bounds vs a parameter, variance vs samples).

    ``series``: ``{"name": y}``, each y as long as ``x``. On a log axis (``logx``, ``logy``) a
    negative value is refused (matplotlib would draw it as if it were 0, hiding its sign); a 0 is
    drawn off the axis' low end (log 0 = -inf), as a curve that touches zero should be. NaN is a gap."""
    _mapping(series, "series", '{"ELBO": values}')
    xs = _values(x, "x")
    curves = {name: _values(y, f"series[{name!r}]") for name, y in series.items()}
    for name, y in curves.items():
        if len(y) != len(xs):
            raise ValueError(f"series[{name!r}]: expected one value per x ({len(xs)}), got {len(y)}")
    for axis, flag, arrays in (("x", logx, {"x": xs}), ("y", logy, {f"series[{n!r}]": y for n, y in curves.items()})):
        for name, values in arrays.items():
            if flag and (values < 0).any():
                raise ValueError(f"{name}: expected values >= 0 on a log {axis} axis (log{axis}=True), "
                                 f"got {int((values < 0).sum())} negative values (smallest {values[values < 0].min():.4g})")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, y in curves.items():
        ax.plot(xs, y, marker="o" if markers else None, ms=4, label=name)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    return _labelled(fig, ax, xlabel, ylabel, title)


def roc_curve(scores, is_anomaly, title: str = "Anomaly detection by reconstruction error",
              anomalies: str = "anomalies", normal: str = "normal examples") -> Figure:
    """ROC curve of an anomaly score (higher = more anomalous), with its AUC in the legend.
    ``anomalies`` / ``normal`` name the two groups on the axes (e.g. "rotated digits")."""
    from sklearn.metrics import RocCurveDisplay

    scores, flags = _values(scores, "scores"), _values(is_anomaly, "is_anomaly")
    if flags.shape != scores.shape or not np.isin(flags, (0, 1)).all():
        raise ValueError(f"is_anomaly: expected one flag per score ({len(scores)}), True/1 for an anomaly and False/0 "
                         f"otherwise, got {len(flags)} values in {sorted(set(flags.tolist()))[:5]}")
    flags = flags.astype(bool)
    if not np.isfinite(scores).all():
        raise ValueError(f"scores: expected finite scores, got {int((~np.isfinite(scores)).sum())} NaN or inf")
    if flags.all() or not flags.any():
        raise ValueError(f"is_anomaly: expected both anomalies (True) and normal examples (False), "
                         f"got {int(flags.sum())} True of {len(flags)}")
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    RocCurveDisplay.from_predictions(flags, scores, ax=ax, name="reconstruction error")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    ax.set_xlabel(f"false alarms: fraction of {normal} flagged")
    ax.set_ylabel(f"detections: fraction of {anomalies} flagged")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def gaussian_contours(gaussians: Mapping[str, tuple], title: str = "Gaussians in a 2-D latent space",
                      xlabel: str = "$z_1$", ylabel: str = "$z_2$", levels: Sequence[float] = (1.0, 2.0)) -> Figure:
    """Contours of 2-D Gaussians in one panel, e.g. a posterior p(z|x) and approximations q(z|x).

    ``gaussians`` maps a legend name to ``(mean (2,), cov (2, 2))`` (tensors or arrays). Each is drawn
    as ellipses at Mahalanobis distances ``levels`` (1 and 2: about 39% and 86% of the mass), the
    first solid and the others dashed, with a ``+`` at the mean; axes have equal scales.
    """
    _mapping(gaussians, "gaussians", '{"posterior": (mean, cov)}')
    levels = [validate.positive_float(level, f"levels[{i}]") for i, level in enumerate(levels)]
    if not levels:
        raise ValueError("levels: expected at least one Mahalanobis distance such as (1.0, 2.0), got none")
    checked = {}
    for name, pair in gaussians.items():
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"gaussians[{name!r}]: expected a (mean, cov) pair, got {type(pair).__name__}")
        mean, cov = (np.asarray(torch.as_tensor(v).detach().cpu(), dtype=float) for v in pair)
        if mean.size != 2 or cov.size != 4:
            raise ValueError(f"gaussians[{name!r}]: expected a mean of shape (2,) and a (2, 2) covariance, "
                             f"got shapes {mean.shape} and {cov.shape}")
        mean, cov = mean.reshape(2), cov.reshape(2, 2)
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError(f"gaussians[{name!r}]: expected a finite mean and covariance, got NaN or inf")
        if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError(f"gaussians[{name!r}]: expected a symmetric positive-definite (2, 2) covariance, got {cov.tolist()}")
        checked[name] = mean, cov
    fig, ax = plt.subplots(figsize=(7.8, 4.8))
    angle = np.linspace(0.0, 2.0 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)])  # (2, 200)
    for i, (name, (mean, cov)) in enumerate(checked.items()):
        root = np.linalg.cholesky(cov)
        color = f"C{i}"
        for j, level in enumerate(levels):
            xy = mean[:, None] + level * root @ circle
            ax.plot(xy[0], xy[1], color=color, lw=2 if j == 0 else 1.2, linestyle="-" if j == 0 else "--",
                    label=name if j == 0 else None)
        ax.plot(*mean, marker="+", ms=12, mew=2, color=color)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def prior_ellipses(ax: plt.Axes, means, logvars, weights=None, level: float = 2.0, color: str = "black",
                   label: str = "prior components (2σ)") -> Figure:
    """Draw each diagonal Gaussian of a prior on a 2-D latent plot ``ax`` as an ellipse at ``level``
    standard deviations (2σ: about 86 % of a 2-D Gaussian's mass), line width growing with its
    mixture weight (relative to the largest), and a ``+`` at its mean; equal axis scales.

    Args: ``means``, ``logvars`` ``(C, 2)`` (or ``(C, J)``: the first two dimensions are drawn);
    ``weights`` ``(C,)`` >= 0 summing to 1 (default equal); ``level`` > 0. Returns the axes' figure.
    """
    means = np.asarray(torch.as_tensor(means).detach().cpu(), dtype=float)
    logvars = np.asarray(torch.as_tensor(logvars).detach().cpu(), dtype=float)
    if means.ndim != 2 or means.shape[0] == 0 or means.shape[1] < 2:
        raise ValueError(f"means: expected shape (C, J) with C >= 1 and J >= 2, got {means.shape}")
    if logvars.shape != means.shape:
        raise ValueError(f"logvars: expected the shape of means {means.shape}, got {logvars.shape}")
    for name, value in (("means", means), ("logvars", logvars)):
        if not np.isfinite(value).all():
            raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(value)).sum())} NaN or inf")
    means, sigmas = means[:, :2], np.exp(0.5 * logvars)[:, :2]
    k = len(means)
    weights = np.full(k, 1.0 / k) if weights is None else np.asarray(torch.as_tensor(weights).detach().cpu(), dtype=float)
    if weights.shape != (k,) or not np.isfinite(weights).all() or (weights < 0).any() or abs(weights.sum() - 1) > 1e-4:
        raise ValueError(f"weights: expected {k} finite weights >= 0 summing to 1 (one per component), "
                         f"got shape {weights.shape} summing to {weights.sum():.6g}")
    level = validate.positive_float(level, "level")
    angle = np.linspace(0.0, 2.0 * np.pi, 100)
    widths = 0.6 + 2.4 * weights / weights.max()  # the heaviest component gets 3 points
    for i, (mean, sigma, width) in enumerate(zip(means, sigmas, widths)):
        ax.plot(mean[0] + level * sigma[0] * np.cos(angle), mean[1] + level * sigma[1] * np.sin(angle), color=color,
                lw=width, alpha=0.8, label=label if i == 0 else None)
        ax.plot(*mean, marker="+", ms=8, mew=1.5, color=color)
    ax.set_aspect("equal", adjustable="datalim")  # circles look round: z1 and z2 on one scale
    handles, names = ax.get_legend_handles_labels()  # keep the digits' legend beside the plot
    ax.legend(handles, names, markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    return ax.figure


def loss_vs_time(histories: Mapping[str, object], part: str = "total", title: str = "Test loss against training time",
                 ylabel: str = "test negative ELBO (nats per digit)", logx: bool = True) -> Figure:
    """For each ``History`` (``{"name": history}``, trained with ``test_images``), the test loss
    ``part`` after each epoch against the training seconds spent so far (evaluation time not
    counted): which model is better for a given wall-clock budget."""
    _check_histories(histories, (part,))
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    for i, (name, h) in enumerate(histories.items()):
        if not h.test[part]:
            raise ValueError(f"histories[{name!r}]: no test losses; train with fit(..., test_images=...)")
        seconds = np.cumsum(h.seconds)
        ax.plot(seconds, h.test[part], marker="o", ms=3, color=f"C{i}", label=name)
    if logx:  # plain numbers at 1-2-5 steps; matplotlib's default labels minor ticks as 3x10^-1
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        ticks = [m * 10.0 ** e for e in range(-3, 6) for m in (1, 2, 5) if low <= m * 10.0 ** e <= high]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    return _labelled(fig, ax, "training time (seconds" + (", log scale)" if logx else ")"), ylabel, title)


def rate_distortion(curves: Mapping[str, Mapping[str, tuple[float, float]]],
                    title: str = "Rate and distortion (nats per example)", iso_elbo: bool = True,
                    iso_elbo_through: str | None = None) -> Figure:
    """Rate (KL, x axis) against distortion (reconstruction, y axis), both in nats per example
    (Alemi et al. 2018, "Fixing a Broken ELBO", Fig. 1).

    ``curves`` maps a series name to ``{point label: (rate, distortion)}``; each series is drawn as
    connected markers with every point labelled (e.g. ``{"beta sweep": {"β=1": (rate, distortion), ...}}``), a
    series of one point as a lone marker. With ``iso_elbo``, dotted lines rate + distortion = const show points
    of equal negative ELBO (lower-left is better; the diagonal through a point is its ELBO).
    ``iso_elbo_through``: a point label (e.g. ``"β=1"``); a dashed line rate + distortion = that point's
    value is drawn through it, so points above it have a larger negative ELBO, points below a smaller one.
    """
    _mapping(curves, "curves", '{"beta sweep": {"β=1": (rate, distortion)}}')
    for name, points in curves.items():
        _mapping(points, f"curves[{name!r}]", '{"β=1": (rate, distortion)}')
        for label, point in points.items():
            where = f"curves[{name!r}][{label!r}]"
            if isinstance(point, (str, bytes)) or not hasattr(point, "__len__") or len(point) != 2:
                raise ValueError(f"{where}: expected a (rate, distortion) pair, got {point!r}")
            validate.real(point[0], f"{where} rate"), validate.real(point[1], f"{where} distortion")
    if iso_elbo_through is not None and not any(iso_elbo_through in points for points in curves.values()):
        labels = [str(label) for points in curves.values() for label in points]
        raise ValueError(f"iso_elbo_through: expected one of the point labels {labels}, got {iso_elbo_through!r}")
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    all_r, all_d = [], []
    for i, (name, points) in enumerate(curves.items()):
        rates = [float(r) for r, _ in points.values()]
        dists = [float(d) for _, d in points.values()]
        all_r += rates
        all_d += dists
        ax.plot(rates, dists, marker="o", ms=6, color=f"C{i}", label=name, linestyle="-" if len(rates) > 1 else "none")
        for label, r, d in zip(points, rates, dists):
            ax.annotate(str(label), (r, d), textcoords="offset points", xytext=(6, 4), fontsize=9, color=f"C{i}")
    if not all_r:
        raise ValueError("curves: expected at least one (rate, distortion) point, got none")
    r_pad = 0.08 * (max(all_r) - min(all_r) + 1.0)
    d_pad = 0.08 * (max(all_d) - min(all_d) + 1.0)
    ax.set_xlim(max(0.0, min(all_r) - r_pad) if min(all_r) >= 0 else min(all_r) - r_pad, max(all_r) + 3 * r_pad)
    ax.set_ylim(min(all_d) - d_pad, max(all_d) + d_pad)
    if iso_elbo:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for total in np.linspace(x0 + y0, x1 + y1, 8)[1:-1]:  # lines rate + distortion = total across the view
            ax.plot([x0, x1], [total - x0, total - x1], color="0.8", linestyle=":", lw=1, zorder=0)
        ax.plot([], [], color="0.8", linestyle=":", label="equal negative ELBO (rate + distortion)")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    if iso_elbo_through is not None:
        r, d = next(points[iso_elbo_through] for points in curves.values() if iso_elbo_through in points)
        total = float(r) + float(d)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        ax.plot([x0, x1], [total - x0, total - x1], color="0.3", linestyle="--", lw=1, zorder=0,
                label=f"rate + distortion of {iso_elbo_through} ({total:.1f} nats)")
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    ax.set_xlabel("rate: KL(q(z|x) ‖ p(z)), nats")
    ax.set_ylabel("distortion: −E_q log p(x|z), nats")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def kl_per_dimension(kls: Mapping[str, object], title: str = "KL of each latent dimension",
                     threshold: float | None = None, threshold_label: str | None = None) -> Figure:
    """The KL (nats, log scale) of each latent dimension, sorted from largest to smallest, one line
    per model (``{"β=1": (J,) KLs, ...}``). A dimension near zero is collapsed: q(z_j|x) = p(z_j).
    ``threshold``: a dashed horizontal line (e.g. the free-bits lambda), named ``threshold_label`` in
    the legend (default: its value in nats). ``kls``: at least one model, each with at least one
    finite KL; ``threshold`` > 0 (the axis is logarithmic)."""
    _mapping(kls, "kls", '{"β=1": kl_per_dimension}')
    curves = {}
    for name, kl in kls.items():
        values = _values(kl, f"kls[{name!r}]")
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"kls[{name!r}]: expected at least one finite KL value (nats), got {values.size} values "
                             f"with {int((~np.isfinite(values)).sum())} NaN or inf")
        curves[name] = values
    threshold = None if threshold is None else validate.positive_float(threshold, "threshold")
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    for i, (name, values) in enumerate(curves.items()):
        values = np.sort(values)[::-1]
        ax.plot(np.arange(1, len(values) + 1), np.clip(values, 1e-4, None), marker="o", ms=4, color=f"C{i}", label=name)
    if threshold is not None:
        ax.axhline(threshold, color="0.4", linestyle="--", lw=1, label=threshold_label or f"{threshold:g} nats")
    ax.set_yscale("log")
    ax.set_xlabel("latent dimension, sorted by its KL")
    ax.set_ylabel("KL per dimension, nats (values below 1e-4 drawn at 1e-4)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def _labelled(fig: Figure, ax: plt.Axes, xlabel: str, ylabel: str, title: str) -> Figure:
    """Axis labels, title, a light grid, the legend and a tight layout: how a line figure is finished."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig


_TEX_WORDS = {r"\mathcal": "", r"\mathrm": "", r"\mathbf": "", r"\operatorname": "", r"\left": "", r"\right": "",
              r"\,": " ", r"\;": " ", r"\ ": " ", r"\mid": "|", r"\|": "‖", r"\log": "log", r"\exp": "exp",
              r"\sigma": "σ", r"\mu": "μ", r"\beta": "β", r"\lambda": "λ", r"\tau": "τ", r"\pi": "π",
              r"\epsilon": "ε", r"\varepsilon": "ε", r"\sum": "Σ", r"\approx": "≈", r"\leq": "≤", r"\geq": "≥",
              r"\le": "≤", r"\ge": "≥", r"\times": "×", r"\cdot": "·", r"\infty": "∞", "^2": "²", "_{": "_", "$": ""}


def _plain(text: str) -> str:
    r"""A label as words a screen reader says: matplotlib's mathtext ($\mathcal{N}(0,\,1)$) to N(0, 1)."""
    for tex, word in sorted(_TEX_WORDS.items(), key=lambda kv: -len(kv[0])):  # longest first: \le after \leq
        text = text.replace(tex, word)
    return " ".join(text.replace("{", "").replace("}", "").replace("\\", "").split())


def alt_text(fig: Figure) -> str:
    """What a figure shows, in words, for a reader who cannot see it (the website's alt text): its
    title, then each panel's title and axes. Built from the labels the helpers above always set."""
    parts = [fig._suptitle.get_text()] if fig._suptitle is not None and fig._suptitle.get_text() else []
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    titled = [ax for ax in panels if (ax.get_title() + ax.get_xlabel() + ax.get_ylabel()).strip()]
    for ax in titled[:6]:
        words = ax.get_title().strip() or "a panel"
        axes = [f"{name}: {label.strip()}" for name, label in (("x", ax.get_xlabel()), ("y", ax.get_ylabel())) if label.strip()]
        legend = ax.get_legend()
        if legend is not None:
            axes.append("legend: " + ", ".join(t.get_text() for t in legend.get_texts()[:10]))
        parts.append(words + (f" ({'; '.join(axes)})" if axes else ""))
    if len(titled) > 6:
        parts.append(f"and {len(titled) - 6} more panels")
    untitled = len(panels) - len(titled)
    if untitled:
        parts.append(f"{untitled} image{'s' if untitled > 1 else ''}" if titled else f"A grid of {untitled} images")
    text = "Figure: " + ". ".join(_plain(p) for p in parts if p.strip())
    return text if len(text) > len("Figure: ") else "Figure"


def _png_with_alt_text(fig: Figure):
    """IPython's PNG formatter for figures, with the alt text as the output's metadata."""
    from IPython.core.pylabtools import print_figure

    # As the inline backend prints a figure (a tight box, base64 text), plus the metadata.
    return print_figure(fig, "png", bbox_inches="tight", base64=True), {"alt": alt_text(fig)}


def _record_alt_text() -> None:
    """In a notebook, every figure's PNG output carries its alt text (read by the website build)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        shell.display_formatter.formatters["image/png"].for_type(Figure, _png_with_alt_text)


_record_alt_text()
