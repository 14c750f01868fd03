"""A lecture deck in a real browser: notebook 03 from the fast-mode course build, built into a deck,
opened from file:// in headless Chromium (Debian's, driven by Playwright; scripts/setup_browser.sh
installs both). Checks slides, rendered equations, zero requests off the file system, the live
widgets (the KL explorer of 03, the sliders of 04 and 05 decode as PyTorch does, no kernel), and
saves screenshots of an equation slide, a figure slide and each widget slide to build/screenshots/."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from test_slides import ROOT, build_slides

from helpers import LOCAL_URLS, check_kl_readout, check_latent_sliders

pytestmark = pytest.mark.browser
SCREENSHOTS = ROOT / "build" / "screenshots"
NOTEBOOK = ROOT / "notebooks" / "03_kl_divergence.ipynb"
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\begin\{|\$\\[a-zA-Z]")


def _deck(course_build: Path, notebook: Path, folder: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stale or metadata-less notebook would be a failure here
        return build_slides.build_deck(notebook, folder, executed=course_build / notebook.name)


@pytest.fixture(scope="module")
def deck(course_build, tmp_path_factory):
    """Notebook 03 from the fast-mode course build (tests/conftest.py), built into a deck in a temp folder."""
    return _deck(course_build, NOTEBOOK, tmp_path_factory.mktemp("deck") / "slides")


def _open_deck(chromium, deck: Path):
    """The deck in a new page of the module's Chromium, once its equations are typeset; the page
    records every request that leaves the file system (``remote_requests``) and its JavaScript errors."""
    page = chromium.new_page(viewport={"width": 1280, "height": 800})
    page.remote_requests, page.errors = [], []
    page.on("request", lambda r: page.remote_requests.append(r.url) if not r.url.startswith(LOCAL_URLS) else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(deck.as_uri())
    page.wait_for_function("window.courseMathDone === true", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def page(chromium, deck):
    page = _open_deck(chromium, deck)
    yield page
    page.close()


def show(page, h: int, v: int) -> None:
    """Go to slide (h, v) with all its fragments shown; wait for the move to settle."""
    page.evaluate("([h, v]) => { Reveal.slide(h, v); while (Reveal.nextFragment()) {} }", [h, v])
    page.wait_for_timeout(300)


def first_slide_with(page, selector: str) -> tuple[int, int]:
    """Indices of the first slide that contains `selector`, the title slide excluded."""
    found = page.evaluate("""(sel) => {
        for (const s of Reveal.getSlides().slice(1)) {
            if (s.querySelector(sel)) { const i = Reveal.getIndices(s); return [i.h, i.v || 0]; }
        }
        return null; }""", selector)
    assert found is not None, f"no slide contains {selector}"
    return tuple(found)


def test_deck_has_many_slides(page):
    count = page.evaluate("Reveal.getTotalSlides()")
    assert count >= 10, f"only {count} slides"
    assert page.evaluate("Reveal.isReady()")


def test_equations_rendered_and_no_raw_tex_left(page):
    rendered = page.evaluate("document.querySelectorAll('.reveal mjx-container svg').length")
    assert rendered >= 10, f"only {rendered} MathJax equations rendered"
    errors = page.evaluate("document.querySelectorAll('.reveal mjx-merror, .reveal [data-mjx-error]').length")
    assert errors == 0, f"{errors} equations failed to typeset"
    # Text of the Markdown cells only (code may hold TeX strings for matplotlib labels), math removed.
    text = page.evaluate("""() => Array.from(document.querySelectorAll('.reveal .jp-RenderedMarkdown')).map(el => {
        const copy = el.cloneNode(true); copy.querySelectorAll('mjx-container').forEach(m => m.remove());
        return copy.textContent; }).join('\\n')""")
    raw = RAW_TEX.findall(text)
    assert not raw, f"raw TeX left in the slides: {raw[:5]}"


def test_no_request_leaves_the_file_system(page):
    show(page, *first_slide_with(page, "img"))
    assert page.remote_requests == [], f"the deck asked the network for {page.remote_requests}"


def test_screenshots_of_an_equation_slide_and_a_figure_slide(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"slides_equation.png": "mjx-container[display='true']", "slides_figure.png": ".jp-OutputArea-output img"}
    for name, selector in shots.items():
        show(page, *first_slide_with(page, selector))
        element = page.locator(f".reveal section.present {selector}").first
        box = element.bounding_box()
        assert box and box["width"] > 50 and box["height"] > 20, f"{selector} is not visible on its slide: {box}"
        assert box["y"] + box["height"] <= 800 + 1 and box["x"] + box["width"] <= 1280 + 1, f"{selector} runs off the slide: {box}"
        page.screenshot(path=str(SCREENSHOTS / name))
        assert (SCREENSHOTS / name).stat().st_size > 10_000


def test_display_equations_are_large_enough_to_read(page):
    # The size each display equation is drawn at on a 1280x800 screen: its font size, times the
    # deck's zoom for a dense slide, times reveal.js's scale to the window.
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll(".reveal mjx-container[display='true']")).map(m => {
        const slide = m.closest("section");
        return parseFloat(getComputedStyle(m).fontSize) * parseFloat(slide.dataset.courseZoom || "1") * Reveal.getScale(); })""")
    assert sizes, "no display equations in the deck"
    assert min(sizes) >= 18, f"smallest display equation {min(sizes):.0f} px on a 1280x800 screen; too small to read"
    assert sorted(sizes)[len(sizes) // 2] >= 24, f"median display equation {sorted(sizes)[len(sizes) // 2]:.0f} px; too small"


def test_kl_explorer_is_live_on_its_slide(page):
    show(page, *first_slide_with(page, ".vae-widget[data-ready=true]"))
    root = page.locator(".reveal section.present .vae-widget[data-ready=true]").first
    check_kl_readout(page, root, "deck 03")
    page.screenshot(path=str(SCREENSHOTS / "slides_03_kl_explorer.png"))
    assert page.remote_requests == [], f"the deck asked the network for {page.remote_requests}"


@pytest.mark.parametrize("stem", ["04_reparameterization_and_training", "05_conditional_vae"])
def test_latent_sliders_are_live_on_their_slide(course_build, chromium, tmp_path, stem):
    page = _open_deck(chromium, _deck(course_build, ROOT / "notebooks" / f"{stem}.ipynb", tmp_path / "slides"))
    try:
        show(page, *first_slide_with(page, ".vae-widget[data-ready=true]"))
        root = page.locator(".reveal section.present .vae-widget[data-ready=true]").first
        check_latent_sliders(page, root, f"deck {stem[:2]}")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"slides_{stem[:2]}_sliders.png"))
        assert page.remote_requests == [] and page.errors == [], (page.remote_requests, page.errors)
    finally:
        page.close()


def test_every_figure_on_the_slides_has_alt_text(page):
    missing = page.evaluate("""() => Array.from(document.querySelectorAll('.reveal img'))
        .filter(i => !i.alt.trim() || i.alt.startsWith('No description')).length""")
    total = page.evaluate("document.querySelectorAll('.reveal img').length")
    assert total >= 3 and missing == 0, f"{missing} of {total} figures on the slides have no alt text"
