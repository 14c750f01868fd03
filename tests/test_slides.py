"""The lecture decks without a browser: every notebook carries deliberate slide metadata, a deck
loads nothing from the web, and a notebook without slide metadata still gives a deck (with a
warning naming it). The deck in a real browser: tests/test_slides_browser.py."""
from __future__ import annotations

import importlib.util
import warnings
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}


def load_build_slides():
    spec = importlib.util.spec_from_file_location("build_slides", ROOT / "scripts" / "build_slides.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_slides = load_build_slides()
needs_assets = pytest.mark.skipif(not (build_slides.NODE_MODULES / "reveal.js").exists(),
                                  reason="slides/node_modules missing: scripts/setup_browser.sh runs npm ci")


class _Urls(HTMLParser):
    """Every URL a page loads by itself: script src, link href, img/iframe/source src."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio") and attrs.get("src"):
            self.urls.append((tag, attrs["src"]))
        if tag == "link" and attrs.get("href"):
            self.urls.append((tag, attrs["href"]))


def loaded_urls(html: str) -> list[tuple[str, str]]:
    parser = _Urls()
    parser.feed(html)
    return parser.urls


def slide_types(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [cell.metadata.get("slideshow", {}).get("slide_type", "-") for cell in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_deliberate_slide_metadata(path):
    nb = nbformat.read(path, as_version=4)
    kinds = slide_types(path)
    assert set(kinds) <= SLIDE_TYPES, f"{path.name}: unknown slide types {set(kinds) - SLIDE_TYPES}"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and kinds[0] == "slide", f"{path.name}: the title cell should open the deck as a slide"
    slides = kinds.count("slide") + kinds.count("subslide")
    assert slides >= 8, f"{path.name}: only {slides} slides; give each idea its own slide"
    notes = [c for c, k in zip(nb.cells, kinds) if k == "notes"]
    assert len(notes) >= 5 and all(c.cell_type == "markdown" and c.source.strip() for c in notes), \
        f"{path.name}: needs speaker notes (Markdown cells with slide type 'notes'), found {len(notes)}"
    # Every heading starts a slide or sub-slide: a heading in the middle of a slide means two ideas.
    for cell, kind in zip(nb.cells, kinds):
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#") and kind not in ("slide", "subslide", "skip", "notes"):
            pytest.fail(f"{path.name} cell {cell.get('id')}: a heading inside a slide ({kind!r}); make it a slide or sub-slide")


@needs_assets
def test_deck_loads_only_local_files(tmp_path):
    notebook = ROOT / "notebooks" / "03_kl_divergence.ipynb"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no executed copy in tmp_path: a deck without outputs
        deck = build_slides.build_deck(notebook, tmp_path, executed=tmp_path / "none.ipynb")
    html = deck.read_text(encoding="utf-8")
    urls = loaded_urls(html)
    assert any(src.endswith("reveal.js") for _, src in urls) and any("mathjax" in src for _, src in urls), urls
    remote = [(tag, src) for tag, src in urls if src.startswith(("http:", "https:", "//"))]
    assert not remote, f"the deck loads from the web: {remote}"
    for tag, src in urls:
        if not src.startswith(("data:", "#")):
            assert (deck.parent / src).is_file(), f"{tag} {src} is not beside the deck in {deck.parent}"
    assert "require(" not in html and "MathJax.Hub" not in html, "the stock template's require.js/MathJax 2 code is back"


@needs_assets
def test_notebook_without_slide_metadata_still_gives_a_deck_with_a_warning(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Plain notebook\nNo slide metadata.", id="cell-01"),
                nbformat.v4.new_code_cell("x = 1", id="cell-02"),
                nbformat.v4.new_markdown_cell("## Second part\n$$a^2 + b^2 = c^2$$", id="cell-03")]
    path = tmp_path / "09_plain.ipynb"
    nbformat.write(nb, path)
    with pytest.warns(build_slides.SlideMetadataWarning, match="09_plain.ipynb"):
        warnings.filterwarnings("ignore", message=".*does not exist: the deck has no outputs")
        deck = build_slides.build_deck(path, tmp_path / "out", executed=tmp_path / "none.ipynb")
    html = deck.read_text(encoding="utf-8")
    assert html.count("<section") >= 2, "one slide per heading expected"
    assert "Second part" in html and "a^2 + b^2" in html


def test_asking_for_a_notebook_that_does_not_exist_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="99"):
        build_slides.select_notebooks(["99"], ROOT / "notebooks")


def test_stale_outputs_are_left_out_with_a_warning(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)", id="cell-01", metadata={"slideshow": {"slide_type": "slide"}})]
    ran = nbformat.v4.new_notebook()
    ran.cells = [nbformat.v4.new_code_cell("print(2)", id="cell-01")]
    ran.cells[0].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    assert build_slides.with_outputs(nb, ran, "x.ipynb") == ["cell-01"]
    assert nb.cells[0].outputs == []
    ran.cells[0].source = "print(1)"
    assert build_slides.with_outputs(nb, ran, "x.ipynb") == []
    assert nb.cells[0].outputs[0]["text"] == "2\n"
