"""One plotting helper per figure kind in the course. Each returns its matplotlib ``Figure`` so a
notebook cell can check what it shows (``fig.axes[0].get_title()``, the plotted data, ...).

Images may be torch tensors or NumPy arrays of shape ``(N, 1, H, W)``, ``(N, H, W)`` or
``(N, H*W)`` (square images), with pixel values in [0, 1].
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from vae_course import losses

# Ten clearly distinct colours for the ten digits (matplotlib's tab10).
DIGIT_COLORS = plt.get_cmap("tab10").colors


def as_image_array(images) -> np.ndarray:
    """Images (tensor or array) -> NumPy ``(N, H, W)`` float array in [0, 1]."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    elif images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"images: expected (N, H*W) with square images, got {images.shape}")
        images = images.reshape(-1, side, side)
    elif images.ndim == 3 and images.shape[0] != 0:
        pass
    else:
        raise ValueError(f"images: expected shape (N, 1, H, W), (N, H, W) or (N, H*W), got {images.shape}")
    return images


def tile(images, ncols: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``(N, H, W)`` images into one ``(rows*(H+pad)-pad, ncols*(W+pad)-pad)`` array."""
    images = as_image_array(images)
    n, h, w = images.shape
    nrows = math.ceil(n / ncols)
    canvas = np.full((nrows * (h + pad) - pad, ncols * (w + pad) - pad), pad_value, dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        canvas[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = img
    return canvas


def image_grid(images, ncols: int = 10, title: str = "", labels: Sequence | None = None,
               size: float = 0.9) -> Figure:
    """A grid of digits, ``ncols`` per row, optional per-image ``labels`` shown above each."""
    arr = as_image_array(images)
    n = len(arr)
    ncols = min(ncols, n)
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
    """Several rows of images with a name on the left of each (e.g. original / noisy / denoised)."""
    arrays = {name: as_image_array(imgs) for name, imgs in rows.items()}
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
    """Originals above their reconstructions (first ``n`` of each)."""
    return image_rows({"original": originals[:n], "reconstruction": reconstructed[:n]}, title=title)


def latent_scatter(z, labels, title: str = "Latent codes by digit", dims: tuple[int, int] = (0, 1),
                   ax: plt.Axes | None = None, max_points: int = 5000) -> Figure:
    """2-D scatter of latent codes ``z (N, J)`` coloured by digit label ``(N,)``."""
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    z, labels = z[:max_points], labels[:max_points]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.2, 5.2))
    else:
        fig = ax.figure
    for digit in np.unique(labels):
        pts = z[labels == digit]
        ax.scatter(pts[:, dims[0]], pts[:, dims[1]], s=6, alpha=0.6, color=DIGIT_COLORS[int(digit) % 10],
                   label=str(digit), rasterized=True)
    ax.set_xlabel(f"$z_{dims[0] + 1}$")
    ax.set_ylabel(f"$z_{dims[1] + 1}$")
    ax.set_title(title)
    ax.legend(title="digit", markerscale=3, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def gaussian_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """``n`` points evenly spaced in probability between ``low`` and ``high`` mapped through the
    standard normal inverse CDF: equal prior mass between neighbours (Kingma & Welling 2014, Fig. 4)."""
    return torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(low, high, n))


def manifold_grid(decode: Callable[[torch.Tensor], torch.Tensor], n: int = 20, latent_dim: int = 2,
                  dims: tuple[int, int] = (0, 1), title: str = "Decoded latent grid (Gaussian quantiles)",
                  tile_lines: bool = False) -> Figure:
    """Decode an ``n x n`` grid over two latent dimensions (others 0) at Gaussian quantiles.

    ``decode`` maps ``(M, latent_dim)`` latents to ``(M, 1, H, W)`` pixels in [0, 1].
    ``tile_lines`` draws thin lines between the decoded images (for tiny ones, e.g. 3x3).
    """
    q = gaussian_quantiles(n)
    z = torch.zeros(n * n, latent_dim)
    # Row r from the top shows the largest z2, as on a plot's y axis.
    z[:, dims[0]] = q.repeat(n)
    z[:, dims[1]] = q.flip(0).repeat_interleave(n)
    pixels = as_image_array(decode(z))
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
    """Decode ``steps`` points on the straight line from ``z_start`` to ``z_end`` (each ``(J,)``)."""
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    z = (1 - t) * z_start.reshape(1, -1).cpu() + t * z_end.reshape(1, -1).cpu()
    return image_grid(decode(z), ncols=steps, title=title, labels=[f"t={v:.2f}" for v in t.squeeze(1).tolist()])


PART_TITLES = {"total": "total: negative ELBO", "reconstruction": "reconstruction: −log p(x|z)",
               "kl": "KL(q(z|x) ‖ p(z))"}


def loss_curves(histories: Mapping[str, object], parts: Sequence[str] = ("total",),
                title: str = "Training curves", ylabel: str = "nats per example") -> Figure:
    """Loss per epoch for one or more ``History`` objects (``{"name": history}``), train solid and
    test dashed, one panel per loss part."""
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


def normal_pdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def draw_gaussians(ax: plt.Axes, mu: float, sigma: float, kl: float | None = None, xlim: float = 6.0) -> None:
    """Draw q = N(mu, sigma^2) against the prior N(0, 1) on ``ax`` (used by the KL explorer)."""
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
    closed-form KL in the title."""
    ncols = min(ncols, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows), squeeze=False)
    for ax in axes.flat[len(params):]:
        ax.axis("off")
    for ax, (mu, sigma) in zip(axes.flat, params):
        kl = float(losses.gaussian_kl(torch.tensor([[float(mu)]], dtype=torch.float64),
                                      torch.tensor([[2.0 * math.log(sigma)]], dtype=torch.float64)))
        draw_gaussians(ax, mu, sigma, kl)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def line_plot(x, series: Mapping[str, object], xlabel: str, ylabel: str, title: str,
              logx: bool = False, logy: bool = False, markers: bool = True) -> Figure:
    """Several named curves over the same x (e.g. bounds vs a parameter, variance vs samples)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, y in series.items():
        ax.plot(x, np.asarray(y, dtype=float), marker="o" if markers else None, ms=4, label=name)
    ax.set_xscale("log" if logx else "linear")
    ax.set_yscale("log" if logy else "linear")
    return _labelled(fig, ax, xlabel, ylabel, title)


def roc_curve(scores, is_anomaly, title: str = "Anomaly detection by reconstruction error",
              anomalies: str = "anomalies", normal: str = "normal examples") -> Figure:
    """ROC curve of an anomaly score (higher = more anomalous), with its AUC in the legend.
    ``anomalies`` / ``normal`` name the two groups on the axes (e.g. "rotated digits")."""
    from sklearn.metrics import RocCurveDisplay

    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    RocCurveDisplay.from_predictions(np.asarray(is_anomaly), np.asarray(scores), ax=ax, name="reconstruction error")
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
    fig, ax = plt.subplots(figsize=(7.8, 4.8))
    angle = np.linspace(0.0, 2.0 * np.pi, 200)
    circle = np.stack([np.cos(angle), np.sin(angle)])  # (2, 200)
    for i, (name, (mean, cov)) in enumerate(gaussians.items()):
        mean = np.asarray(torch.as_tensor(mean).detach().cpu(), dtype=float).reshape(2)
        cov = np.asarray(torch.as_tensor(cov).detach().cpu(), dtype=float).reshape(2, 2)
        if not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError(f"gaussians[{name!r}]: expected a symmetric positive-definite (2, 2) covariance")
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
    ``weights`` ``(K,)`` summing to 1 (default equal). Returns the axes' figure.
    """
    means = np.asarray(torch.as_tensor(means).detach().cpu(), dtype=float)[:, :2]
    sigmas = np.exp(0.5 * np.asarray(torch.as_tensor(logvars).detach().cpu(), dtype=float))[:, :2]
    k = len(means)
    weights = np.full(k, 1.0 / k) if weights is None else np.asarray(torch.as_tensor(weights).detach().cpu(), dtype=float)
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
    the legend (default: its value in nats)."""
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    for i, (name, kl) in enumerate(kls.items()):
        values = np.sort(np.asarray(torch.as_tensor(kl).detach().cpu(), dtype=float).ravel())[::-1]
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
