"""The website's parts that need no browser: the decoders exported for the live sliders
(vae_course.browser), the figures' alt text (vae_course.plots.alt_text), and how
scripts/build_site.py turns an executed notebook into a page (widgets, figures).
The pages themselves, in Chromium: tests/test_site_browser.py."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch

from vae_course import browser, models, plots, widgets

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_site)


def _trained_looking(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights spread like a trained model's (the default init gives images near 1/2 everywhere)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model.eval()


MODELS = {
    "vae relu": lambda: models.VAE(latent_dim=2, hidden_dims=(32,)),
    "vae tanh, two layers": lambda: models.VAE(latent_dim=3, hidden_dims=(24, 16), activation="tanh"),
    "vae elu": lambda: models.VAE(latent_dim=2, hidden_dims=(16,), activation="elu"),
    "gaussian decoder": lambda: models.VAE(latent_dim=2, hidden_dims=(16,), likelihood="gaussian"),
    "cvae": lambda: models.CVAE(latent_dim=2, hidden_dims=(32,)),
}


@pytest.mark.parametrize("name", MODELS)
def test_exported_decoder_decodes_as_the_model(name):
    model = _trained_looking(MODELS[name]())
    spec = json.loads(json.dumps(browser.decoder_spec(model)))  # what the page receives
    generator = torch.Generator().manual_seed(1)
    labels = range(spec["num_classes"]) if spec["num_classes"] else [None]
    spread = 0.0
    for _ in range(4):
        z = 2 * torch.randn(model.latent_dim, generator=generator)
        for label in labels:
            y = None if label is None else torch.tensor([label])
            with torch.no_grad():
                out = model.decode(z[None]) if y is None else model.decode(z[None], y)
                expected = model.to_pixels(out)[0]
            got = browser.decode(spec, z, label)
            assert got.shape == expected.shape
            assert (got - expected).abs().max() < 1e-5
            spread = max(spread, float(expected.max() - expected.min()))
    assert spread > 0.3, "the check needs images that are not flat"
    assert browser._check_against_model(spec, model) < 1e-5


def test_a_label_changes_the_cvae_image_and_is_checked():
    model = _trained_looking(models.CVAE(latent_dim=2, hidden_dims=(32,)))
    spec = browser.decoder_spec(model)
    z = torch.tensor([0.5, -1.0])
    assert (browser.decode(spec, z, 3) - browser.decode(spec, z, 7)).abs().max() > 0.05
    for bad in (10, -1, None, 2.5):
        with pytest.raises((ValueError, TypeError), match="label"):
            browser.decode(spec, z, bad)


def test_decode_refuses_a_wrong_latent_size():
    spec = browser.decoder_spec(models.VAE(latent_dim=2, hidden_dims=(8,)))
    with pytest.raises(ValueError, match="z: expected 2 numbers, got 3"):
        browser.decode(spec, torch.zeros(3))


def test_only_mlp_decoders_are_exported():
    with pytest.raises(TypeError, match="model: expected an MLP decoder"):
        browser.decoder_spec(models.ConvVAE(latent_dim=2))
    with pytest.raises(TypeError, match="model: expected a model with an MLP decoder"):
        browser.decoder_spec(torch.nn.Linear(2, 2))


def test_export_writes_each_live_widget(tmp_path):
    model = _trained_looking(models.VAE(latent_dim=2, hidden_dims=(16,)))
    sliders = widgets.latent_sliders(model)
    sliders.sliders[0].value = 1.25
    explorer = widgets.kl_explorer(mu=0.5, sigma=2.0)
    written = browser.export_widgets(tmp_path)
    assert sliders.model_id in written and explorer.model_id in written
    for widget, kind in ((sliders, "latent"), (explorer, "kl")):
        text = (tmp_path / f"{widget.model_id}.js").read_text()
        assert text.startswith("window.VAE_WIDGETS = window.VAE_WIDGETS || {};")
        spec = browser.read_exported(tmp_path / f"{widget.model_id}.js")
        assert spec["kind"] == kind
    spec = browser.read_exported(tmp_path / f"{sliders.model_id}.js")
    assert spec["z"] == [1.25, 0.0] and spec["dims"] == [0, 1] and spec["limit"] == 3.0
    # the browser starts from the picture the notebook left: the same pixels
    assert np.abs(browser.decode(spec, spec["z"]).numpy() - sliders.pixels).max() < 1e-5
    kl = browser.read_exported(tmp_path / f"{explorer.model_id}.js")
    assert (kl["mu"], kl["sigma"]) == (0.5, 2.0) and kl["mu_range"] == [-3.0, 3.0]


@pytest.mark.parametrize("make", [lambda m: widgets.latent_sliders(m, limit=-1.0), lambda m: widgets.latent_sliders(m, dims=[5]),
                                  lambda m: widgets.latent_sliders(m, limit="3"), lambda m: widgets.kl_explorer(sigma=0.0),
                                  lambda m: widgets.kl_explorer(mu=float("nan"))],
                         ids=["limit<0", "dims", "limit str", "sigma=0", "mu NaN"])
def test_a_refused_widget_leaves_nothing_behind_for_the_export(make, tmp_path):
    """A widget whose arguments are refused is never built: the kernel holds no half-made widget,
    and the site's export (which walks every live widget) writes only whole ones."""
    model = _trained_looking(models.VAE(latent_dim=2, hidden_dims=(16,)))
    before = set(browser._live_widgets())
    with pytest.raises((TypeError, ValueError)):
        make(model)
    assert set(browser._live_widgets()) == before
    whole = widgets.latent_sliders(model)
    assert whole.model_id in browser.export_widgets(tmp_path)


def test_alt_text_says_what_a_figure_shows():
    fig = plots.latent_scatter(np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 10, title="Codes")
    text = plots.alt_text(fig)
    assert text.startswith("Figure: Codes") and "x: z_1" in text and "y: z_2" in text and "legend: 0, 1" in text
    fig = plots.image_grid(np.random.default_rng(0).random((6, 28, 28)), ncols=3, title="Six digits")
    assert plots.alt_text(fig).startswith("Figure: Six digits") and "images" in plots.alt_text(fig)
    fig = matplotlib.figure.Figure()
    assert plots.alt_text(fig) == "Figure"  # nothing to say: a plain word, never empty


def test_digit_colours_and_markers_tell_ten_digits_apart():
    assert len(set(plots.DIGIT_COLORS)) == 10 and len(set(plots.DIGIT_MARKERS)) == 10
    fig = plots.latent_scatter(np.zeros((10, 2)), np.arange(10))
    paths = [c.get_paths()[0].vertices.round(3).tobytes() for c in fig.axes[0].collections]
    assert len(set(paths)) == 10, "each digit has its own marker shape"


def _png(seed: int = 0) -> str:
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.random.default_rng(seed).random((4, 4)), format="png")
    return base64.b64encode(buf.getvalue()).decode()


def test_the_site_page_of_a_notebook(tmp_path):
    static = tmp_path / "_static"
    (static / "figures").mkdir(parents=True)
    (static / "widgets").mkdir()
    specs = tmp_path / "widgets"
    specs.mkdir()
    (specs / "abc123.js").write_text('window.VAE_WIDGETS = window.VAE_WIDGETS || {};\nwindow.VAE_WIDGETS["abc123"] = {"kind": "latent"};\n')
    view = "application/vnd.jupyter.widget-view+json"
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", data={view: {"model_id": "abc123"}, "text/plain": "LatentSliders()"}),
        nbformat.v4.new_output("display_data", data={view: {"model_id": "zzz"}, "text/plain": "Button()"}),
        nbformat.v4.new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"},
                               metadata={"image/png": {"alt": 'Figure: "β" <sweep>'}}),
        nbformat.v4.new_output("display_data", data={"image/png": _png(1)}),
        nbformat.v4.new_output("display_data", data={}),
        nbformat.v4.new_output("stream", name="stdout", text="KL 1.23\n"),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb, figures, live = build_site.for_the_site(nb, "04_x", specs, static)
    html = [o.get("data", {}).get("text/html", "") for o in nb.cells[0].outputs]
    assert (figures, live) == (2, 1) and len(nb.cells[0].outputs) == 5  # the empty output dropped
    assert '<div class="vae-widget" data-widget="abc123">' in html[0] and "_static/widgets/abc123.js" in html[0]
    assert (static / "widgets" / "abc123.js").is_file()
    assert build_site.LIVE_NOTES["latent"] in html[0]  # the note under a latent-slider widget says what the page does
    assert html[1] == build_site.WIDGET_NOTE  # no spec: a note, never a dead widget
    assert 'alt="Figure: &quot;β&quot; &lt;sweep&gt;"' in html[2] and (static / "figures" / "04_x-01.png").is_file()
    assert 'alt="Figure 2 of notebook 04"' in html[3]
    assert nb.cells[0].outputs[4]["text"] == "KL 1.23\n"


def test_answers_are_folded_on_the_site():
    answer = nbformat.v4.new_markdown_cell("<!-- SOLUTION -->\n**Answer.** $\\beta = 784$.")
    solution = nbformat.v4.new_code_cell("x = 1\n# BEGIN SOLUTION\nx = 2\n# END SOLUTION")
    plain = nbformat.v4.new_code_cell("x = 3")
    text = nbformat.v4.new_markdown_cell("**Answer.** not an exercise's answer cell")
    for cell in (answer, solution, plain, text):
        build_site.fold_solutions(cell)
    assert answer.source.startswith('<details class="course-answer">') and answer.source.endswith("</details>")
    assert "**Answer.** $\\beta = 784$." in answer.source and "<!-- SOLUTION -->" not in answer.source
    assert solution.metadata["tags"] == ["hide-input"] and "tags" not in plain.metadata
    assert text.source == "**Answer.** not an exercise's answer cell"


def test_alt_text_reads_math_as_words():
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    left.set_title(r"prior $p(z)=\mathcal{N}(0,1)$, $q(z)=\mathcal{N}(1.50,\,0.50^2)$")
    left.set_xlabel("$z$")
    right.set_ylabel(" ")  # a blank label is no label
    text = plots.alt_text(fig)
    plt.close(fig)
    assert "N(0,1)" in text and "N(1.50, 0.50²)" in text and "(x: z)" in text
    assert "\\" not in text and "$" not in text and "y:  " not in text
