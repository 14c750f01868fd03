"""Build a reveal.js deck per notebook: build/slides/NN_name.slides.html.

The slides come from each cell's slide metadata (slide, subslide, fragment, skip, notes) in
notebooks/, and the outputs (figures, printed numbers) from the executed copy in build/ that
`bash scripts/course.sh` writes; cells are matched by their ids. reveal.js and MathJax are copied
from slides/node_modules (npm) into build/slides/lib/, so every deck opens offline from file://.

    python scripts/build_slides.py [NN ...]     # all notebooks, or those numbered NN
Run it through `bash scripts/slides.sh`, which installs reveal.js/MathJax and executes the notebooks
that have no executed copy in build/ yet.
"""
from __future__ import annotations

import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import jinja2
import nbformat
from nbconvert import SlidesExporter
from nbconvert.preprocessors import TagRemovePreprocessor

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
NODE_MODULES = ROOT / "slides" / "node_modules"
TEMPLATES = ROOT / "slides" / "templates"

# (source in node_modules, destination under the deck's lib/ folder): everything a deck loads.
ASSETS = [
    ("reveal.js/dist", "reveal.js/dist"),
    ("reveal.js/plugin/notes", "reveal.js/plugin/notes"),
    ("mathjax/es5/tex-svg-full.js", "mathjax/tex-svg-full.js"),
]


HIDE_INPUT = "slides-hide-input"
WIDGET = "application/vnd.jupyter.widget-view+json"


WIDGET_NOTE = '<p class="course-widget-note">Live widget: run this cell in JupyterLab to use it.</p>'
SITE = Path(__file__).resolve().parent / "site"  # the widgets' script and style, shared with the website


def live_widget(model_id: str, widgets_dir: Path | None, out_dir: Path) -> str:
    """The HTML for a widget on a slide: live when the main job exported its spec
    (build/widgets/<id>.js, vae_course.browser) - the slide's own script decodes each slider
    position, no kernel running - else a line saying where to use it."""
    spec = widgets_dir / f"{model_id}.js" if widgets_dir and model_id else None
    if spec is None or not spec.is_file():
        return WIDGET_NOTE
    lib = out_dir / "lib"
    (lib / "widgets").mkdir(parents=True, exist_ok=True)
    shutil.copy2(spec, lib / "widgets" / spec.name)
    for name in ("vae_widgets.js", "vae_widgets.css"):
        shutil.copy2(SITE / name, lib / name)
    # (vae_widgets.js starts every widget not yet started: loading it once per widget is harmless)
    return (f'<link rel="stylesheet" href="lib/vae_widgets.css"><script src="lib/widgets/{spec.name}"></script>'
            f'<div class="vae-widget" data-widget="{model_id}"></div><script src="lib/vae_widgets.js"></script>')


def for_the_deck(cell, widgets_dir: Path | None = None, out_dir: Path = BUILD / "slides") -> int:
    """Adapt a code cell's display to a static deck: a figure is shown without the code that drew
    it (the code is in the notebook), and a widget is live when its spec is in ``widgets_dir``
    (see live_widget), else replaced by a line saying where to use it. Returns the live widgets."""
    outputs, live = [], 0
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if output.get("output_type") == "display_data" and not data:
            continue  # a progress line that fit() emptied when training ended
        if WIDGET in data:
            block = live_widget(data[WIDGET].get("model_id", ""), widgets_dir, out_dir)
            live += block != WIDGET_NOTE
            output = nbformat.v4.new_output("display_data", data={"text/html": block})
        outputs.append(output)
    cell.outputs = outputs
    if any("image/png" in o.get("data", {}) for o in outputs):
        cell.metadata.setdefault("tags", []).append(HIDE_INPUT)
    return live


class SlideMetadataWarning(UserWarning):
    """A notebook without slide metadata: the deck is still built, one slide per heading."""


def select_notebooks(wanted: list[str], folder: Path = NOTEBOOKS) -> list[Path]:
    """Notebooks in `folder` whose number (NN) or file name is in `wanted` (all when empty).

    Raises FileNotFoundError naming what was asked for when nothing matches."""
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if wanted:
        paths = [p for p in paths if p.stem[:2] in wanted or p.name in wanted or p.stem in wanted]
    if not paths:
        raise FileNotFoundError(f"notebooks: expected numbers or names of notebooks in {folder}, got {wanted or 'none there'}")
    return paths


def install_assets(out_dir: Path) -> None:
    """Copy reveal.js and MathJax from slides/node_modules into out_dir/lib (skips unchanged files)."""
    for source, target in ASSETS:
        src, dst = NODE_MODULES / source, out_dir / "lib" / target
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: run `npm ci --prefix slides` (scripts/setup_browser.sh does)")
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        elif not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def has_slide_metadata(nb) -> bool:
    return any("slide_type" in cell.metadata.get("slideshow", {}) for cell in nb.cells)


def slides_by_heading(nb) -> None:
    """Fallback for a notebook without slide metadata: a new slide at every Markdown heading."""
    for cell in nb.cells:
        starts = cell.cell_type == "markdown" and cell.source.lstrip().startswith("#")
        cell.metadata["slideshow"] = {"slide_type": "slide" if starts else "-"}
    if nb.cells:
        nb.cells[0].metadata["slideshow"] = {"slide_type": "slide"}


def with_outputs(nb, executed, name: str) -> list[str]:
    """Copy outputs from the executed notebook into nb, matching cells by id.

    Returns the ids of code cells whose executed copy is missing or has different source (stale)."""
    by_id = {cell.get("id"): cell for cell in executed.cells}
    stale = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        ran = by_id.get(cell.get("id"))
        if ran is None or ran.source != cell.source:
            stale.append(cell.get("id"))
            continue
        cell.outputs = ran.outputs
        cell.execution_count = ran.execution_count
    return stale


def build_deck(notebook: Path, out_dir: Path, executed: Path | None = None) -> Path:
    """Write out_dir/<notebook stem>.slides.html and the local reveal.js/MathJax it loads.

    notebook: the notebook with the slide metadata; executed: a run of it (by default
    build/<name>.ipynb) whose outputs go on the slides. Warns (SlideMetadataWarning) and still
    builds a deck, one slide per heading, when the notebook has no slide metadata. The widgets
    are live when the run's folder has their exported specs (``widgets/`` beside ``executed``).
    """
    nb = nbformat.read(notebook, as_version=4)
    if not has_slide_metadata(nb):
        warnings.warn(f"{notebook}: no slide metadata in any cell; building a deck with one slide per "
                      f"Markdown heading (set View > Cell Toolbar > Slideshow in Jupyter to choose)",
                      SlideMetadataWarning, stacklevel=2)
        slides_by_heading(nb)
    executed = executed or BUILD / notebook.name
    if executed.exists():
        stale = with_outputs(nb, nbformat.read(executed, as_version=4), notebook.name)
        if stale:
            warnings.warn(f"{executed} is out of date with {notebook} ({len(stale)} code cells differ, e.g. "
                          f"{stale[0]}): their outputs are left out; run `bash scripts/course.sh {notebook.name[:2]}`",
                          stacklevel=2)
    else:
        warnings.warn(f"{executed} does not exist: the deck has no outputs; run `bash scripts/course.sh {notebook.name[:2]}`",
                      stacklevel=2)
    nb.metadata.pop("widgets", None)  # widget state needs a widget manager from a CDN
    for cell in nb.cells:
        if cell.cell_type == "code":
            for_the_deck(cell, executed.parent / "widgets", out_dir)
    exporter = SlidesExporter(
        preprocessors=[TagRemovePreprocessor(remove_input_tags={HIDE_INPUT}, enabled=True)],
        template_name="vae_reveal",
        extra_template_basedirs=[str(TEMPLATES)],
        extra_loaders=[jinja2.DictLoader({"figure.html.j2": (SITE / "figure.html.j2").read_text(encoding="utf-8")})],
        reveal_url_prefix="lib/reveal.js",
        reveal_theme="white",
        reveal_transition="none",
        reveal_number="c/t",
        reveal_width="1280",
        reveal_height="800",
    )
    html, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": _title(nb, notebook)}})
    out_dir.mkdir(parents=True, exist_ok=True)
    install_assets(out_dir)
    deck = out_dir / f"{notebook.stem}.slides.html"
    deck.write_text(html, encoding="utf-8")
    return deck


def _title(nb, notebook: Path) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.match(r"\s*#\s+(.+)", cell.source)
            if match:
                return match.group(1).strip()
    return notebook.stem


def main(argv: list[str]) -> int:
    out_dir = BUILD / "slides"
    total = time.perf_counter()
    for notebook in select_notebooks(argv):
        start = time.perf_counter()
        deck = build_deck(notebook, out_dir)
        sections = deck.read_text(encoding="utf-8").count("<section")
        print(f"{deck.relative_to(ROOT)}  {sections:3d} sections  {time.perf_counter() - start:5.1f} s", flush=True)
    print(f"total {time.perf_counter() - total:.1f} s; open a deck in a browser (S: speaker notes, F: fullscreen)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
