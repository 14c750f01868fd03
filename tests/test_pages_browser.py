"""The reading pages (build/*.html, written by the main job) in a real browser, with the network off.

Every notebook is executed in fast mode into a temporary folder by ``scripts/build_course.py --out``
(the main job's own code; about two minutes on 2 cores), and each page is opened from file:// in
headless Chromium (Debian's, driven by Playwright; scripts/setup_browser.sh installs both) with
every request that is not a local file aborted and recorded. For each page:

* no request left the machine, and no local file the page asked for is missing;
* MathJax (from PyPI, copied beside the pages) drew every equation: no raw TeX in the text, no
  TeX error;
* the widgets are drawn from the state the execution saved (html-manager and require.js from npm,
  copied beside the pages), each with the note that it is a snapshot; built without them, each
  widget is replaced by a note, and the page loads no widget code;
* the speaker notes ("Say:" cells, for the slides) are not in the page.

Also one page served by ``python -m http.server`` (relative URLs work there too), and the build's
summary: the GEMM reading with the times, and executed notebooks without clutter. Screenshots of an
equation and a widget go to build/screenshots/page_*.png for review.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest

from helpers import LOCAL_URLS as LOCAL
from helpers import Opened, static_server

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SCREENSHOTS = ROOT / "build" / "screenshots"
# TeX that MathJax should have replaced: $$, \( \[, \begin{...}, $\command, or $x$ in running text.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\begin\{|\$\\[a-zA-Z]|\$[^$\s][^$\n]{0,80}\$|\\(frac|mathbb|mathrm|sum|log)\b")

_spec = importlib.util.spec_from_file_location("build_course", ROOT / "scripts" / "build_course.py")
build_course = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_course)


@pytest.fixture(scope="module")
def site(course_build) -> Path:
    """Every notebook executed in fast mode, with its page (tests/conftest.py: course_build)."""
    return course_build


PAGE_READY = "window.courseMathDone === true"


def _open(chromium, path: Path) -> Opened:
    return Opened(chromium, path.as_uri(), PAGE_READY, width=1100)


def _widget_outputs(nb) -> int:
    return sum(build_course.WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def _markdown_text(page) -> str:
    """The text a reader sees in the Markdown cells, typeset math and MathJax's TeX sources removed,
    and code spans (TeX there is meant literally, and MathJax leaves it alone)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.jp-RenderedMarkdown')).map(el => {
        const copy = el.cloneNode(true);
        copy.querySelectorAll('script, code, pre, .MathJax, .MathJax_Display, .MathJax_Preview, .MJX_Assistive_MathML')
            .forEach(m => m.remove());
        return copy.textContent; }).join('\\n')""")


def _math_report(page) -> dict:
    """Every TeX source MathJax found, and whether each was drawn (a visible frame before it)."""
    return page.evaluate("""() => {
        const jax = MathJax.Hub.getAllJax();
        const drawn = jax.filter(j => { const f = document.getElementById(j.inputID + '-Frame');
                                        return f && f.getBoundingClientRect().width > 0; });
        return {count: jax.length, drawn: drawn.length,
                errors: document.querySelectorAll('.MathJax .merror, .MathJax_Display .merror, .noError').length,
                output: jax.length ? jax[0].outputJax : null}; }""")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_page_renders_offline(site, chromium, notebook):
    page_path = site / f"{notebook.stem}.html"
    error = json.loads((site / "summary.json").read_text())["notebooks"][notebook.name]["error"]
    assert error is None, f"{notebook.name} failed to execute: {error}"
    executed = nbformat.read(site / notebook.name, as_version=4)
    opened = _open(chromium, page_path)
    try:
        page = opened.page
        # Widgets: drawn from the saved state (wait for the renderer), each with its note.
        widgets = _widget_outputs(executed)
        if widgets:
            page.wait_for_function(
                """(n) => Array.from(document.querySelectorAll('.jupyter-widgets.jp-OutputArea-output'))
                       .filter(el => el.querySelector('.widget-slider, .jupyter-widget-slider')
                                     && el.getBoundingClientRect().height > 50).length >= n""",
                arg=widgets, timeout=180_000)
            notes = page.locator(".course-widget-note").count()
            assert notes == widgets, f"{widgets} widgets but {notes} snapshot notes"
        assert opened.remote == [], f"{notebook.name}: the page asked the network for {opened.remote[:5]}"
        assert not opened.failed, f"{notebook.name}: local files the page needs are missing: {opened.failed[:5]}"
        math = _math_report(page)
        assert math["count"] >= 5, f"{notebook.name}: only {math['count']} equations found by MathJax"
        assert math["drawn"] == math["count"], f"{notebook.name}: {math['count'] - math['drawn']} equations not drawn"
        assert math["errors"] == 0, f"{notebook.name}: {math['errors']} TeX errors"
        assert math["output"] == "HTML-CSS"
        text = _markdown_text(page)
        raw = [m.group(0) for m in RAW_TEX.finditer(text)]
        assert not raw, f"{notebook.name}: raw TeX left in the page: {raw[:5]}"
        # The speaker notes are for the slides only.
        source = nbformat.read(notebook, as_version=4)
        notes = [c.source.strip() for c in source.cells if build_course.is_speaker_note(c)]
        body = page.inner_text("body")
        assert "Say:" not in body, f"{notebook.name}: a speaker note ('Say:') is in the page"
        for note in notes:
            first_line = note.splitlines()[0].replace("**", "")[:50]
            assert first_line not in body, f"{notebook.name}: speaker note in the page: {first_line!r}"
        assert not any(build_course.is_speaker_note(c) for c in executed.cells)
        no_alt = page.evaluate("""() => Array.from(document.querySelectorAll('.jp-RenderedImage img'))
            .filter(i => !i.alt.trim() || i.alt.startsWith('No description')).length""")
        assert no_alt == 0, f"{notebook.name}: {no_alt} figures without alt text"
    finally:
        opened.close()


def test_screenshots_of_an_equation_and_a_widget(site, chromium):
    """For a reader's review: an equation and a widget of notebook 03, drawn offline."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    opened = _open(chromium, site / "03_kl_divergence.html")
    try:
        page = opened.page
        page.wait_for_selector(".jupyter-widgets .widget-slider, .jupyter-widgets .jupyter-widget-slider", timeout=180_000)
        for name, selector in (("page_equation.png", ".MathJax_Display"), ("page_widget.png", ".jupyter-widgets.jp-OutputArea-output")):
            element = page.locator(selector).first
            element.scroll_into_view_if_needed()
            box = element.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 20, f"{selector} is not visible: {box}"
            page.screenshot(path=str(SCREENSHOTS / name))
            assert (SCREENSHOTS / name).stat().st_size > 10_000
    finally:
        opened.close()


def test_without_the_widget_renderer_each_widget_is_a_note(site, chromium, tmp_path):
    """Built where npm never ran (no slides/node_modules): a note instead of each widget, and no
    widget code or require.js requested; the equations are still drawn (MathJax comes from PyPI)."""
    executed = nbformat.read(site / "03_kl_divergence.ipynb", as_version=4)
    widgets = _widget_outputs(executed)
    assert widgets >= 1, "notebook 03 shows the KL explorer"
    (tmp_path / "lib").symlink_to(site / "lib")
    html = build_course.page_html(executed, widgets=False)
    page_path = tmp_path / "03_kl_divergence.html"
    page_path.write_text(html, encoding="utf-8")
    assert "require.js" not in html and "embed-amd" not in html and "widget-state+json" not in html
    opened = _open(chromium, page_path)
    try:
        page = opened.page
        notes = page.locator(".course-widget-note")
        assert notes.count() == widgets and "run this notebook in JupyterLab" in notes.first.inner_text()
        assert page.locator(".jupyter-widgets").count() == 0
        assert opened.remote == []
        math = _math_report(page)
        assert math["count"] >= 5 and math["drawn"] == math["count"]
    finally:
        opened.close()


def test_pages_work_from_a_static_server(site, chromium):
    """`python -m http.server` in the build folder: the relative URLs of lib/ resolve there too."""
    with static_server(site) as origin:
        opened = Opened(chromium, origin + "03_kl_divergence.html", PAGE_READY, allowed=LOCAL + (origin,), width=1100)
        try:
            assert opened.remote == [] and not opened.failed, (opened.remote, opened.failed)
            math = _math_report(opened.page)
            assert math["count"] >= 5 and math["drawn"] == math["count"]
        finally:
            opened.close()


def test_summary_has_the_gemm_reading_and_no_clutter(site):
    summary = json.loads((site / "summary.json").read_text())
    assert summary["mode"] == "fast" and summary["gemm_gflops"] > 0
    assert summary["gemm_gflops"] == max(summary["gemm_gflops_before_after"])
    assert set(summary["notebooks"]) == {p.name for p in NOTEBOOKS}
    for name, entry in summary["notebooks"].items():
        assert entry["error"] is None, f"{name}: {entry['error']}"
        assert entry["seconds"] > 0
        executed = nbformat.read(site / name, as_version=4)
        assert build_course.clutter(executed) == entry["clutter"] == [], f"{name}: {entry['clutter'][:3]}"
    assert summary["widgets_drawn"] is (ROOT / "slides" / "node_modules" / "@jupyter-widgets" / "html-manager").is_dir()
