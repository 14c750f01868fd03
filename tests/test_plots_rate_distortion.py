"""Tests of vae_course.plots' rate-distortion figure and KL-per-dimension figure."""
from __future__ import annotations

import numpy as np
import pytest
import torch


def test_rate_distortion_and_kl_per_dimension_figures():
    import matplotlib
    matplotlib.use("Agg")
    from vae_course import plots

    fig = plots.rate_distortion({"beta sweep": {"β=1": (20.0, 120.0), "β=4": (5.0, 150.0)}, "other": {"": (10.0, 130.0)}})
    ax = fig.axes[0]
    assert "nats" in ax.get_xlabel() and "nats" in ax.get_ylabel()
    assert [t.get_text() for t in ax.texts][:2] == ["β=1", "β=4"]
    assert list(ax.lines[0].get_xdata()) == [20.0, 5.0]
    with pytest.raises(ValueError, match="curves"):
        plots.rate_distortion({})
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0, 0.0])}, threshold=0.5)
    line = fig.axes[0].lines[0]
    assert np.allclose(line.get_ydata(), [2.0, 0.1, 1e-4]) and fig.axes[0].get_yscale() == "log"


def test_rate_distortion_draws_the_iso_elbo_line_through_a_named_point_and_names_the_threshold():
    import matplotlib
    matplotlib.use("Agg")
    from vae_course import plots

    fig = plots.rate_distortion({"sweep": {"β=1": (20.0, 120.0), "β=4": (5.0, 150.0)}}, iso_elbo_through="β=1")
    ax = fig.axes[0]
    through = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(through) == 1 and "140.0" in through[0].get_label()
    xs, ys = through[0].get_xdata(), through[0].get_ydata()
    assert np.allclose(np.asarray(xs) + np.asarray(ys), 140.0)       # every point of the line has R + D = 140
    assert "--" not in [line.get_linestyle() for line in plots.rate_distortion({"s": {"a": (1.0, 2.0)}}).axes[0].lines]
    with pytest.raises(ValueError, match="iso_elbo_through.*β=2"):
        plots.rate_distortion({"sweep": {"β=1": (20.0, 120.0)}}, iso_elbo_through="β=2")
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0])}, threshold=0.5, threshold_label="free-bits floor λ = 0.5 nats")
    assert "free-bits floor λ = 0.5 nats" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    fig = plots.kl_per_dimension({"a": torch.tensor([0.1, 2.0])}, threshold=0.5)
    assert "0.5 nats" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
