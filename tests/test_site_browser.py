"""The course's website (build/site/, scripts/build_site.py) in a real browser, with the network off.

Built from the fast-mode course build (tests/conftest.py: course_build) and opened from file://
in headless Chromium with every request that is not a local file aborted and recorded:

* every page loads with no external and no failed request, no raw TeX, and alt text on every <img>;
* search for "reparameterization" finds notebook 04; previous/next walk the course in order;
* the live widgets: moving each slider of 03, 04 and 05 changes the picture, and the browser's
  pixels equal the PyTorch decode of the same z (and label) within 1/255; the KL explorer's
  readout equals the package's closed-form KL;
* the site also works from `python -m http.server`.
Screenshots go to build/screenshots/site_*.png for review.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import LOCAL_URLS as LOCAL
from helpers import Opened, check_kl_readout, check_latent_sliders, static_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SCREENSHOTS = ROOT / "build" / "screenshots"
# TeX left untypeset: \( \[ $$, \begin{...}, or a TeX command.
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\\begin\{|\\(?:frac|mathbb|mathcal|mathrm|sum|log|mu|sigma)\b")
MATH_DONE = """() => !document.querySelector('script[src*="MathJax.js"]') ||
    (window.MathJax && MathJax.isReady === true && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running)"""


@pytest.fixture(scope="module")
def site(course_build) -> Path:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_site.py"), "--build", str(course_build)],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (course_build / "site" / "index.html").is_file()
    return course_build / "site"


def _visible_text(page) -> str:
    """The article's text a reader sees: typeset math, code, and MathJax's sources removed."""
    return page.evaluate("""() => { const a = document.querySelector('article') || document.body;
        const copy = a.cloneNode(true);
        copy.querySelectorAll('script, code, pre, .MathJax, .MathJax_Display, .MathJax_Preview, .MJX_Assistive_MathML, .highlight')
            .forEach(m => m.remove());
        return copy.textContent; }""")


PAGES = ["index.html"] + [f"{p.stem}.html" for p in NOTEBOOKS]


@pytest.mark.parametrize("name", PAGES, ids=lambda n: n[:2] if n[0].isdigit() else "home")
def test_page_loads_offline_with_math_and_alt_text(site, chromium, name):
    opened = Opened(chromium, (site / name).as_uri(), MATH_DONE)
    try:
        page = opened.page
        assert opened.remote == [], f"{name}: the page asked the network for {opened.remote[:5]}"
        assert not opened.failed, f"{name}: local files the page needs are missing: {opened.failed[:5]}"
        assert not opened.errors, f"{name}: JavaScript errors: {opened.errors[:3]}"
        raw = RAW_TEX.findall(_visible_text(page))
        assert not raw, f"{name}: raw TeX left in the page: {raw[:5]}"
        images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), i.getAttribute('alt')])")
        missing = [src for src, alt in images if not (alt or "").strip()]
        assert not missing, f"{name}: images without alt text: {missing[:5]}"
        if name != "index.html":
            assert len(images) >= 3, f"{name}: only {len(images)} figures"
            assert page.locator("span.math, div.math").count() >= 5
            assert page.evaluate("() => MathJax.Hub.getAllJax().length") >= 5
            assert page.locator(".MathJax .merror, .MathJax_Display .merror").count() == 0
        else:
            links = page.evaluate("() => Array.from(document.querySelectorAll('article a')).map(a => a.getAttribute('href'))")
            for p in NOTEBOOKS:
                assert f"{p.stem}.html" in links, f"the home page does not link {p.stem}"
            assert any(href and href.endswith(".ipynb") for href in links), "no student notebook to download"
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "site_home.png"))
    finally:
        opened.close()


def test_search_finds_the_reparameterization_notebook(site, chromium):
    opened = Opened(chromium, (site / "search.html").as_uri() + "?q=reparameterization", MATH_DONE)
    try:
        page = opened.page
        page.wait_for_function("() => document.querySelectorAll('#search-results li, ul.search li').length > 0",
                               timeout=60_000)
        hrefs = page.evaluate("() => Array.from(document.querySelectorAll('#search-results li a, ul.search li a'))"
                              ".map(a => a.getAttribute('href'))")
        assert any(h.startswith("04_reparameterization") for h in hrefs), hrefs
        assert opened.remote == [] and not opened.failed and not opened.errors, (opened.remote, opened.failed, opened.errors)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "site_search.png"))
    finally:
        opened.close()


def _links(chromium, url: str) -> dict[str, str | None]:
    """The href of the page's next and previous links (None where it has none)."""
    # Only the links matter here: each page's math and figures are checked by its own test above.
    opened = Opened(chromium, url, "() => document.readyState === 'complete'")
    try:
        return {which: (opened.page.locator(f"a.{which}-page").first.get_attribute("href")
                        if opened.page.locator(f"a.{which}-page").count() else None) for which in ("next", "prev")}
    finally:
        opened.close()


def test_previous_and_next_walk_the_course_in_order(site, chromium):
    """Following "next" from the home page visits every notebook in order; on each page, "previous"
    leads back to the page it came from."""
    order = [f"{p.stem}.html" for p in NOTEBOOKS]
    seen, page = [], "index.html"
    for _ in range(len(NOTEBOOKS) + 2):
        links = _links(chromium, (site / page).as_uri())
        if seen:
            assert links["prev"] is not None and Path(links["prev"]).name == (seen[-2] if len(seen) > 1 else "index.html"), \
                (page, links)
        if links["next"] is None:
            break
        page = Path(links["next"]).name
        seen.append(page)
    assert seen == order


@pytest.mark.parametrize("stem", ["04_reparameterization_and_training", "05_conditional_vae"])
def test_latent_sliders_decode_in_the_browser_as_pytorch(site, chromium, stem):
    opened = Opened(chromium, (site / f"{stem}.html").as_uri(), MATH_DONE)
    try:
        page = opened.page
        roots = page.locator(".vae-widget[data-ready=true]")
        assert roots.count() >= 1, f"{stem}: no live widget"
        root = roots.first
        check_latent_sliders(page, root, stem)
        root.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"site_{stem[:2]}_sliders.png"))
        assert not opened.errors and opened.remote == [], (opened.errors, opened.remote)
    finally:
        opened.close()


def test_kl_explorer_readout_is_the_closed_form_kl(site, chromium):
    opened = Opened(chromium, (site / "03_kl_divergence.html").as_uri(), MATH_DONE)
    try:
        page = opened.page
        root = page.locator(".vae-widget[data-ready=true]").first
        check_kl_readout(page, root, "03")
        root.scroll_into_view_if_needed()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "site_03_kl_explorer.png"))
    finally:
        opened.close()


def test_site_works_from_a_static_server(site, chromium):
    with static_server(site) as origin:
        opened = Opened(chromium, origin + "04_reparameterization_and_training.html", MATH_DONE, allowed=LOCAL + (origin,))
        try:
            assert opened.remote == [] and not opened.failed and not opened.errors
            assert opened.page.locator(".vae-widget[data-ready=true]").count() >= 1
        finally:
            opened.close()
