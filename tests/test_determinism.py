"""Determinism: two executions of the fast course on CPU print identical metrics.

Each notebook runs twice in fresh kernels (fast mode, CPU, one thread: the setting the test
command uses); every printed line holding a number, timing lines left out
(``scripts/build_course.py::numeric_outputs``), must be the same in both runs. Marked slow: it
executes the fast course twice (a few minutes on 2 cores); it still runs in the test command.
"""
from __future__ import annotations

import importlib.util
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


def _metrics(path: Path, numeric_outputs) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return numeric_outputs(nb)


def test_numeric_outputs_keep_metrics_and_drop_timings():
    numeric_outputs = _build_course().numeric_outputs
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                           text="test negative ELBO 123.45 nats\ntrained in 3.2 s\n"
                                                "28,000 samples/s\nthroughput: 15,734 digits/s\nno numbers here\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)]
    nb.cells = [cell]
    assert numeric_outputs(nb) == ["cell 0: test negative ELBO 123.45 nats", "cell 0: 0.25"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_two_fast_runs_print_identical_metrics(path, monkeypatch):
    monkeypatch.setenv("VAE_COURSE_MODE", "fast")
    monkeypatch.setenv("VAE_COURSE_DEVICE", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    numeric_outputs = _build_course().numeric_outputs
    first, second = _metrics(path, numeric_outputs), _metrics(path, numeric_outputs)
    assert first, f"{path.name} printed no metrics"
    differ = [(a, b) for a, b in zip(first, second) if a != b]
    assert len(first) == len(second) and not differ, differ[:5]
