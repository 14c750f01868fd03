"""Executed notebooks: two executions of the fast course on CPU print identical metrics, and what
they save holds nothing a learner must skip.

Every printed line holding a number, timing lines and the model cache's "pretrained:" lines left
out (``scripts/build_course.py::numeric_outputs``), must be the same in both runs, and the executed
notebook must hold no stderr, warning, log or progress-bar text (``build_course.clutter``).

The first run is nbval's, when this session ran every cell of the notebook on CPU (the conftest
records it; this test runs after the notebooks): the shared trained models were then loaded from
the session's cache wherever an earlier notebook had trained them. The second run is the fast
course build (``tests/conftest.py: course_build``, the main job's code), which trains everything
(``VAE_COURSE_CACHE_DIR=off``), so the comparison also shows that a loaded model prints what a
trained one does; the browser tests then read that same build. Without nbval's run (this file alone, or a GPU), the notebook runs twice
here: with an empty cache (training, saving), then with that cache (loading). Marked slow.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _build_course():
    spec = importlib.util.spec_from_file_location("build_course", ROOT / "scripts" / "build_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _without_cell_numbers(lines: list[str]) -> list[str]:
    return [line.split(": ", 1)[1] if line.startswith("cell ") else line for line in lines]


def _code_notebook(source: str):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    return nb


def test_numeric_outputs_keep_metrics_and_drop_timings():
    numeric_outputs = _build_course().numeric_outputs
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                           text="test negative ELBO 123.45 nats\ntrained in 3.2 s\n"
                                                "28,000 samples/s\nthroughput: 15,734 digits/s\nno numbers here\n"
                                                "pretrained: loaded the 784-400-2 VAE from build/cache/x.pt\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)]
    nb.cells = [cell]
    assert numeric_outputs(nb) == ["cell 0: test negative ELBO 123.45 nats", "cell 0: 0.25"]


@pytest.mark.slow
@pytest.mark.after_notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_two_fast_runs_print_identical_metrics_and_no_clutter(path, monkeypatch, nbval_run, tmp_path, request):
    from vae_course.config import settings

    monkeypatch.setenv("VAE_COURSE_MODE", "fast")
    build_course = _build_course()
    first = nbval_run(path) if settings().fast and settings().device.type == "cpu" else None
    if first is None:   # no nbval run to reuse: two runs here, on CPU, the second one loading what the first saved
        monkeypatch.setenv("VAE_COURSE_DEVICE", "cpu")
        monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
        monkeypatch.setenv("VAE_COURSE_CACHE_DIR", str(tmp_path))
        first = _execute(path)
        executed = _execute(path)
    else:               # the fast course build (tests/conftest.py), made with the model cache off
        build = request.getfixturevalue("course_build")
        error = json.loads((build / "summary.json").read_text())["notebooks"][path.name]["error"]
        assert error is None, f"{path.name} failed in the course build: {error}"
        executed = nbformat.read(build / path.name, as_version=4)
    clutter = build_course.clutter(executed)
    # (the build drops the speaker-note cells: the lines are compared in order, without their cell numbers)
    first, second = _without_cell_numbers(build_course.numeric_outputs(first)), \
        _without_cell_numbers(build_course.numeric_outputs(executed))
    assert first, f"{path.name} printed no metrics"
    differ = [(a, b) for a, b in zip(first, second) if a != b]
    assert len(first) == len(second) and not differ, differ[:5]
    assert not clutter, f"{path.name}: outputs a learner must skip (fix them at their source): {clutter[:5]}"


def test_clutter_finds_stderr_warnings_logs_and_progress_bars():
    clutter = _build_course().clutter
    nb = nbformat.v4.new_notebook()
    clean = nbformat.v4.new_code_cell("")
    clean.outputs = [nbformat.v4.new_output("stream", name="stdout", text="test negative ELBO 123.45 nats\n"),
                     nbformat.v4.new_output("display_data", data={}),  # a finished progress line, emptied
                     nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)]
    nb.cells = [clean]
    assert clutter(nb) == []
    bad = [nbformat.v4.new_output("stream", name="stderr", text="anything at all\n"),
           nbformat.v4.new_output("display_data", data={"text/plain": "training VAE:   0%|          | 0/28 [00:00<?, ?epoch/s]"}),
           nbformat.v4.new_output("stream", name="stdout", text="epoch 3/10 [00:02<00:05]\n"),
           nbformat.v4.new_output("stream", name="stdout", text="/x.py:3: UserWarning: careful\n"),
           nbformat.v4.new_output("stream", name="stdout", text="[IPKernelApp] WARNING | Kernel is running\n")]
    for output in bad:
        cell = nbformat.v4.new_code_cell("")
        cell.outputs = [output]
        nb.cells = [clean, cell]
        found = clutter(nb)
        assert len(found) == 1 and found[0].startswith("cell 1: "), (output, found)


def test_training_in_a_kernel_shows_progress_then_leaves_nothing():
    """fit() in a Jupyter kernel: the learner sees a progress line updated once per pass; the
    saved notebook keeps no trace of it (no stderr, no "0%" text, no widget state)."""
    nb = _code_notebook("""
import torch
from IPython.display import DisplayHandle
from vae_course.models import VAE
from vae_course.train import fit

shown, update = [], DisplayHandle.update
DisplayHandle.update = lambda self, obj, **kw: shown.append(obj.get("text/plain", "")) or update(self, obj, **kw)
torch.manual_seed(0)
fit(VAE(latent_dim=2), torch.rand(64, 1, 28, 28), steps=6, batch_size=32, device="cpu")   # 3 passes of 2 steps
DisplayHandle.update = update
print(shown)
""")
    NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    shown = eval(next(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout"))  # noqa: S307
    assert [s.split("|")[-1].split()[0] for s in shown[:3]] == ["1/3", "2/3", "3/3"], shown
    assert "loss=" in shown[2] and shown[3] == "", "the line shows the loss, then is emptied at the end"
    nb.cells[0].outputs = [o for o in outputs if o.get("name") != "stdout"]  # the test's own print aside
    assert _build_course().clutter(nb) == []
    assert [o.get("data") for o in nb.cells[0].outputs] == [{}], "one display, emptied; no stderr"
    assert "widgets" not in nb.metadata, "no progress widget"
