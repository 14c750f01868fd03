"""Plots return figures that show what they claim; widgets redraw when driven (no browser)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vae_course import models, plots, train, widgets  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def digits(n=6, side=28):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, side, side, generator=g)


def test_as_image_array_accepts_the_three_layouts_and_rejects_others():
    x = digits(3)
    for layout in (x, x[:, 0], x.flatten(1), x.numpy()):
        arr = plots.as_image_array(layout)
        assert arr.shape == (3, 28, 28)
        np.testing.assert_allclose(arr, x[:, 0].numpy())
    with pytest.raises(ValueError, match="images"):
        plots.as_image_array(torch.rand(3, 783))
    with pytest.raises(ValueError, match="images"):
        plots.as_image_array(torch.rand(28))


def test_tile_places_each_image_in_its_cell():
    imgs = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 2, 2) / 10
    canvas = plots.tile(imgs, ncols=3, pad=1)
    assert canvas.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert canvas[0, 0] == 0.0 and canvas[3, 6] == pytest.approx(0.5) and canvas[2, 0] == 1.0  # padding row


def test_image_grid_shows_every_image_with_title_and_labels():
    x = digits(12)
    fig = plots.image_grid(x, ncols=5, title="Some digits", labels=list(range(12)))
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12 and fig._suptitle.get_text() == "Some digits"
    np.testing.assert_allclose(shown[7].images[0].get_array(), x[7, 0].numpy())
    assert shown[7].get_title() == "7"


def test_image_rows_and_reconstructions_label_rows():
    x = digits(4)
    fig = plots.reconstructions(x, 1 - x, n=3)
    ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert ylabels == ["original", "reconstruction"]
    assert sum(1 for ax in fig.axes if ax.images) == 6


def test_latent_scatter_one_series_per_digit_with_axis_labels():
    z = torch.randn(200, 2)
    y = torch.arange(200) % 10
    fig = plots.latent_scatter(z, y, title="codes")
    ax = fig.axes[0]
    assert len(ax.collections) == 10 and ax.get_xlabel() == "$z_1$" and ax.get_title() == "codes"
    np.testing.assert_allclose(ax.collections[3].get_offsets(), z[y == 3].numpy(), rtol=1e-6)


def test_gaussian_quantiles_are_equally_spaced_in_probability():
    q = plots.gaussian_quantiles(5)
    probs = torch.distributions.Normal(0, 1).cdf(q)
    torch.testing.assert_close(probs, torch.linspace(0.05, 0.95, 5), atol=1e-5, rtol=0)


def test_manifold_grid_decodes_the_quantile_grid_top_row_largest_z2():
    seen = []

    def decode(z):
        seen.append(z.clone())
        # image brightness encodes z2, so the canvas order can be checked
        return torch.sigmoid(z[:, 1]).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)

    fig = plots.manifold_grid(decode, n=5, latent_dim=3)
    z = seen[0]
    assert z.shape == (25, 3) and torch.all(z[:, 2] == 0)
    canvas = fig.axes[0].images[0].get_array()
    assert canvas[0, 0] > canvas[-1, 0], "the top row should show the largest z2"
    assert "z_1" in fig.axes[0].get_xlabel()


def test_interpolation_goes_from_start_to_end():
    decode = lambda z: torch.sigmoid(z[:, :1]).view(-1, 1, 1, 1).expand(-1, 1, 3, 3)  # noqa: E731
    fig = plots.interpolation(decode, torch.tensor([-3.0, 0.0]), torch.tensor([3.0, 0.0]), steps=5)
    values = [ax.images[0].get_array()[0, 0] for ax in fig.axes if ax.images]
    assert len(values) == 5 and values == sorted(values) and values[0] < 0.1 and values[-1] > 0.9


def test_loss_curves_plot_train_and_test_for_each_history():
    h = train.History()
    for e in range(3):
        for part in ("total", "reconstruction", "kl"):
            h.train[part].append(10.0 - e)
            h.test[part].append(11.0 - e)
    fig = plots.loss_curves({"a": h, "b": h}, parts=("total", "kl"))
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 4
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [11, 10, 9])
    assert fig.axes[0].get_ylabel() == "nats per example"


def test_gaussian_densities_titles_carry_the_closed_form_kl():
    fig = plots.gaussian_densities([(0.0, 1.0), (1.0, 0.5)])
    titles = [ax.get_title() for ax in fig.axes]
    expected = 0.5 * (0.25 - math.log(0.25) - 1 + 1)
    assert titles[0] == "KL(q || p) = 0.000 nats" and titles[1] == f"KL(q || p) = {expected:.3f} nats"


def test_line_plot_and_roc_curve():
    fig = plots.line_plot([1, 2, 3], {"up": [1, 2, 3], "down": [3, 2, 1]}, "x", "y", "t", logy=True)
    assert [l.get_label() for l in fig.axes[0].lines] == ["up", "down"] and fig.axes[0].get_yscale() == "log"
    scores = np.r_[np.zeros(50), np.ones(50)] + np.random.default_rng(0).normal(0, 0.1, 100)
    fig = plots.roc_curve(scores, np.r_[np.zeros(50), np.ones(50)].astype(bool))
    assert "AUC = 1.00" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())


# ---------------------------------------------------------------- widgets


@pytest.fixture
def vae2():
    torch.manual_seed(0)
    return models.VAE(hidden_dims=(32,), latent_dim=2).eval()


def test_latent_sliders_redraw_the_decoded_digit(vae2):
    w = widgets.latent_sliders(vae2)
    assert len(w.sliders) == 2 and w.digit is None
    before_png, before = w.image.value, w.pixels.copy()
    w.sliders[1].value = 2.5
    assert w.z.tolist() == [0.0, 2.5]
    with torch.no_grad():
        expected = torch.sigmoid(vae2.decode(torch.tensor([[0.0, 2.5]])))[0, 0].numpy()
    np.testing.assert_allclose(w.pixels, expected, atol=1e-6)
    assert not np.allclose(w.pixels, before) and w.image.value != before_png
    w.reset()
    np.testing.assert_allclose(w.pixels, before, atol=1e-6)
    assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n"


def test_latent_sliders_reject_bad_dims(vae2):
    with pytest.raises(ValueError, match="dims"):
        widgets.latent_sliders(vae2, dims=[0, 5])


def test_cvae_sliders_change_with_the_class_and_refuse_a_vae(vae2):
    torch.manual_seed(0)
    cvae = models.CVAE(hidden_dims=(32,), latent_dim=2).eval()
    w = widgets.cvae_sliders(cvae)
    first = w.pixels.copy()
    w.digit.value = 7
    with torch.no_grad():
        expected = torch.sigmoid(cvae.decode(torch.zeros(1, 2), torch.tensor([7])))[0, 0].numpy()
    np.testing.assert_allclose(w.pixels, expected, atol=1e-6)
    assert not np.allclose(w.pixels, first)
    with pytest.raises(TypeError, match="model"):
        widgets.cvae_sliders(vae2)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_latent_sliders_take_every_model_and_a_digit_only_for_one_with_labels(name):
    torch.manual_seed(0)
    extra = {"ConvVAE": {}, "MixturePriorVAE": {"n_components": 2}}.get(name, {"hidden_dims": (8,)})
    model = models.MODELS[name](latent_dim=2, **extra).eval()
    w = widgets.latent_sliders(model)
    assert (w.digit is not None) == (name == "CVAE")
    w.sliders[0].value = 1.0
    y = torch.tensor([w.digit.value]) if w.digit is not None else None
    with torch.no_grad():
        expected = model.to_pixels(model.decode(torch.tensor([[1.0, 0.0]]), y))[0, 0].numpy()
    np.testing.assert_allclose(w.pixels, expected, atol=1e-6)


@pytest.mark.parametrize("bad", ["vae", None, torch.nn.Linear(2, 2), 3])
def test_sliders_refuse_what_is_not_a_course_model_by_name(bad):
    for make in (widgets.latent_sliders, widgets.cvae_sliders):
        with pytest.raises(TypeError, match="^model: expected a model of vae_course.models"):
            make(bad)


def test_kl_explorer_shows_the_closed_form_and_redraws():
    w = widgets.kl_explorer()
    assert w.kl == pytest.approx(0.0)
    png = w.png
    w.mu.value, w.sigma.value = 1.0, 0.5
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(1.0, 0.5), torch.distributions.Normal(0.0, 1.0))
    assert w.kl == pytest.approx(float(expected), rel=1e-6)
    assert w.png != png and w.image.value == w.png
    assert f"{w.kl:.3f} nats" in w.readout.value
    assert w.ax.get_title() == f"KL(q || p) = {w.kl:.3f} nats"


def test_roc_axes_name_the_groups_and_densities_wrap_into_rows():
    fig = plots.roc_curve([0.1, 0.9], [False, True], anomalies="rotated digits", normal="upright digits")
    assert "rotated digits" in fig.axes[0].get_ylabel() and "upright digits" in fig.axes[0].get_xlabel()
    fig = plots.gaussian_densities([(0.0, 1.0)] * 5)
    drawn = [ax for ax in fig.axes if ax.lines]
    assert len(drawn) == 5 and len(fig.axes) == 6  # 2 rows of 3, the last panel blank


def test_cvae_one_hot_defaults_to_the_labels_length():
    cvae = models.CVAE(hidden_dims=(8,), latent_dim=2, num_classes=4)
    onehot = cvae.one_hot(torch.tensor([3, 0]))
    assert onehot.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]]
    with pytest.raises(ValueError, match="y"):
        cvae.one_hot(torch.tensor([3, 0]), 3)
