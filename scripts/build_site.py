"""The course as a website: build/site/ from the executed notebooks the main job wrote to build/.

    python scripts/build_site.py                 # build/ -> build/site/
    python scripts/build_site.py --build DIR     # DIR/NN_*.ipynb -> DIR/site/

Sphinx with myst-nb (notebooks with their outputs, not executed again) and the Furo theme: a home
page, the table of contents in a sidebar, previous/next links and full-text search. Everything
the site uses is in it; nothing is fetched from outside, so it opens from file:// and from any
static server (``python -m http.server -d build/site``):
* equations: MathJax 2.7 from PyPI (jupyter-server-mathjax; the copy the main job put in lib/);
* Furo and Sphinx ship their CSS, JavaScript and search index; the theme uses the system's fonts;
* widgets: myst-nb's widget renderer would come from a CDN, so it is switched off. The latent
  sliders (04, 05) and the KL explorer (03) are drawn by scripts/site/vae_widgets.js, which decodes
  in the browser with the trained decoder's weights that the main job exported
  (build/widgets/<widget id>.js, vae_course.browser); any other widget is shown as a note.
Every figure is an <img> with alt text: the figure's title, panels and axes, which the course's
plotting code records with the figure (vae_course.plots, output metadata "alt").
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import shutil
import sys
from pathlib import Path

import nbformat

from vae_course.browser import read_exported

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # (also when loaded by path, as the tests do)
    sys.path.insert(0, str(HERE))
from make_student_notebooks import BEGIN, MARKDOWN_ANSWER, WHOLE_CELL  # noqa: E402 - the solution markers
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"  # relative to _static/

TITLE = "From autoencoders to conditional VAEs"
WIDGET_NOTE = ('<p class="course-widget-note"><em>An interactive widget is here: run this notebook in JupyterLab '
               "to use it.</em></p>")
LIVE_NOTES = {  # under each live widget, by its kind: what the page computes, with no Python running
    "latent": "Live: this page decodes every slider position itself, with the trained decoder's weights; no Python is running.",
    "kl": "Live: this page computes the closed-form KL and draws both densities for every slider position; no Python is running.",
}

CONF = '''\
# Written by scripts/build_site.py: the course's website (Sphinx + myst-nb + Furo), offline.
project = {title!r}
author = "the course's authors"
copyright = "the course's authors; code MIT, see LICENSE"
extensions = ["myst_nb"]
html_theme = "furo"
html_title = {title!r}
html_static_path = ["_static"]
html_css_files = ["course.css", "vae_widgets.css"]
html_js_files = ["vae_widgets.js"]
html_show_sourcelink = False
html_copy_source = False
exclude_patterns = ["_build", "downloads"]
nb_execution_mode = "off"            # the main job executed the notebooks: their outputs are shown
nb_ipywidgets_js = {{}}               # myst-nb's widget renderer comes from a CDN: ours is local
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure"]
mathjax_path = {mathjax!r}
# MathJax 2.7 as the PyPI package ships it: STIX-Web fonts only (as the main job's reading pages).
mathjax2_config = {{
    "tex2jax": {{"inlineMath": [["\\\\(", "\\\\)"]], "displayMath": [["\\\\[", "\\\\]"]], "processEscapes": True,
                 "ignoreClass": "tex2jax_ignore|mathjax_ignore", "processClass": "math|output_area|output_html"}},
    "HTML-CSS": {{"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None,
                 "linebreaks": {{"automatic": True}}}},
    "fast-preview": {{"disabled": True}},
    "messageStyle": "none",
}}
html_show_search_summary = False     # the summaries are fetched page by page, which file:// forbids
'''

CSS = """\
/* Printed outputs wrap instead of hiding their ends behind a scroll bar */
details.course-answer { border-left: 3px solid var(--color-brand-primary); padding: 0.2em 0.8em; margin: 0.5em 0; }
details.course-answer > summary { cursor: pointer; font-weight: 600; }
.cell_output pre, .output pre { white-space: pre-wrap; word-break: break-word; }
/* The hidden MathML MathJax adds for screen readers: no TeX web fonts (the PyPI package has none) */
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }
"""


def notebooks(build: Path) -> list[Path]:
    found = sorted(build.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SystemExit(f"--build: expected the main job's executed notebooks (NN_name.ipynb) in {build}, found none: "
                         "run `bash scripts/course.sh` first")
    return found


def title_of(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def figure_html(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" class="course-figure" />'


def fold_solutions(cell) -> None:
    """An exercise's answer is folded on the site, so a learner reading it tries first: a written answer
    (a Markdown cell opening with the SOLUTION marker) in a <details> block, a solution's code behind
    myst-nb's "show code" toggle (the markers of scripts/make_student_notebooks.py)."""
    lines = cell.source.splitlines()
    if cell.cell_type == "markdown" and lines and lines[0].strip() == MARKDOWN_ANSWER:
        body = "\n".join(lines[1:]).strip()
        cell.source = (f'<details class="course-answer">\n<summary>Answer (try the exercise first)</summary>\n\n'
                       f"{body}\n\n</details>")
    elif cell.cell_type == "code" and any(line.strip() in (BEGIN, WHOLE_CELL) for line in lines):
        tags = cell.metadata.setdefault("tags", [])
        if "hide-input" not in tags:
            tags.append("hide-input")


def for_the_site(nb, stem: str, widgets_dir: Path, static: Path) -> tuple[object, int, int]:
    """The executed notebook as the site shows it: each figure an <img> with alt text (its PNG in
    _static/figures/), each exported widget a live <div> with its spec's script, any other widget a
    note, empty outputs dropped, the exercises' answers folded. Returns (notebook, figures, live widgets)."""
    figures = live = 0
    for cell in nb.cells:
        fold_solutions(cell)
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if output.get("output_type") == "display_data" and not data:
                continue
            if WIDGET_VIEW in data:
                model_id = data[WIDGET_VIEW].get("model_id", "")
                spec = widgets_dir / f"{model_id}.js"
                if model_id and spec.is_file():
                    shutil.copy2(spec, static / "widgets" / spec.name)
                    live += 1
                    block = (f'<script src="_static/widgets/{html.escape(spec.name)}"></script>'
                             f'<div class="vae-widget" data-widget="{html.escape(model_id)}"></div>'
                             f'<p class="course-widget-note"><em>{LIVE_NOTES[read_exported(spec)["kind"]]}</em></p>')
                else:
                    block = WIDGET_NOTE
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": block}))
                continue
            if "image/png" in data:
                figures += 1
                name = f"{stem}-{figures:02d}.png"
                (static / "figures" / name).write_bytes(base64.b64decode(data["image/png"]))
                alt = output.get("metadata", {}).get("image/png", {}).get("alt") or f"Figure {figures} of notebook {stem[:2]}"
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": figure_html(f"_static/figures/{name}", alt)}))
                continue
            outputs.append(output)
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return nb, figures, live


def home_page(titles: dict[str, str], summary: dict, downloads: list[tuple[str, str]]) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = readme.split("\n\n")[1].strip()  # the first paragraph under the title
    rows = []
    for stem, title in titles.items():
        seconds = summary.get("notebooks", {}).get(f"{stem}.ipynb", {}).get("seconds")
        rows.append(f"| {stem[:2]} | [{title}]({stem}.ipynb) | " + (f"{seconds:.0f} s" if seconds is not None else "") + " |")
    gemm = summary.get("gemm_gflops")
    jobs, threads = summary.get("jobs", 1), summary.get("threads_per_notebook")
    side_by_side = (f", {jobs} notebooks at a time with {threads} torch thread{'s' * (threads != 1)} each"
                    if jobs > 1 and threads else "")
    wall = summary.get("wall_seconds")
    machine = (f"Run times: {summary.get('mode', '?')} mode on a machine whose float32 matrix multiply reads "
               f"{gemm:.0f} GFLOP/s ({summary.get('device', '?')}{side_by_side})"
               + (f"; the whole course in {wall:.0f} s" if wall else "") + "; scale by that reading for yours."
               if gemm else "")
    lines = [f"# {TITLE}", "", intro, "",
             f"Read the notebooks in order: 01-05 are the core course; 06-{max(titles)[:2]} go further and can be taken in any "
             "order after 05. Every page shows the notebook as the course's main job executed it, with its figures; "
             "the latent sliders (04, 05) and the KL explorer (03) move in this page, with no Python running.", "",
             "| # | notebook | run time |", "|---|---|---|", *rows, "", machine, ""]
    if downloads:
        have_slides = any(path.endswith(".slides.html") for _, path in downloads)
        students = sorted({label[:2] for label, path in downloads if path.endswith(".ipynb")})
        lines += ["## Downloads", "",
                  f"The notebooks to work through yourself, with the exercises' answers taken out (those with checked "
                  f"exercises: {', '.join(students)})" + (", and the lecture slides (reveal.js, open offline; the "
                  "sliders move there too)" if have_slides else "") + ". On these pages each answer is folded: "
                  "open it after you have tried.", ""]
        lines += [f"- {{download}}`{label} <{path}>`" for label, path in downloads]
        lines.append("")
    lines += ["```{toctree}", ":maxdepth: 1", ":caption: The course", ":hidden:", "", *titles, "```", ""]
    return "\n".join(lines)


def stage(build: Path, src: Path) -> dict:
    """Write the Sphinx project into ``src``; returns counts for the summary."""
    if src.exists():
        shutil.rmtree(src)
    static = src / "_static"
    for folder in (static / "figures", static / "widgets", src / "downloads"):
        folder.mkdir(parents=True)
    mathjax = build / "lib" / "mathjax"
    if not (mathjax / "MathJax.js").is_file():
        raise SystemExit(f"MathJax: expected the main job's copy in {mathjax}: run `bash scripts/course.sh` first")
    shutil.copytree(mathjax, static / "mathjax")
    for name in ("vae_widgets.js", "vae_widgets.css"):  # the live widgets (shared with the slides)
        shutil.copy2(HERE / "site" / name, static / name)
    (static / "course.css").write_text(CSS, encoding="utf-8")
    titles, counts = {}, {"figures": 0, "live_widgets": 0}
    for path in notebooks(build):
        nb = nbformat.read(path, as_version=4)
        titles[path.stem] = title_of(nb)
        nb, figures, live = for_the_site(nb, path.stem, build / "widgets", static)
        counts["figures"] += figures
        counts["live_widgets"] += live
        nbformat.write(nb, src / path.name)
    downloads = []
    for path in sorted((ROOT / "notebooks" / "student").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(path, src / "downloads" / path.name)
        downloads.append((f"{path.stem[:2]}: the notebook to work through ({path.name})", f"downloads/{path.name}"))
    for path in sorted((build / "slides").glob("[0-9][0-9]_*.slides.html")):
        shutil.copy2(path, src / "downloads" / path.name)
        downloads.append((f"{path.name[:2]}: slides ({path.name})", f"downloads/{path.name}"))
    summary_path = build / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    (src / "index.md").write_text(home_page(titles, summary, downloads), encoding="utf-8")
    (src / "conf.py").write_text(CONF.format(title=TITLE, mathjax=MATHJAX), encoding="utf-8")
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="the main job's output folder (default build/)")
    args = parser.parse_args(argv)
    from sphinx.cmd.build import build_main

    build = args.build.resolve()
    src, out = build / "site-src", build / "site"
    counts = stage(build, src)
    if out.exists():
        shutil.rmtree(out)
    status = build_main(["-b", "html", "-q", "-W", "--keep-going", "-d", str(build / "site-doctrees"), str(src), str(out)])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) if out.exists() else 0
    print(f"site: {out}/index.html ({counts['figures']} figures, {counts['live_widgets']} live widgets, "
          f"{size / 2**20:.1f} MiB){'' if status == 0 else '; Sphinx reported problems above'}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
