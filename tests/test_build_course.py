"""scripts/build_course.py, the main job's executor: notebooks run side by side (--jobs), each in
its own kernel with the cores' torch threads shared out, slowest first; a failing notebook does not
stop the others. (The whole course through it: tests/test_determinism.py and the browser tests.)"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def build_course():
    spec = importlib.util.spec_from_file_location("build_course", ROOT / "scripts" / "build_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Each of the two notebooks says it has started, then waits (up to a minute) for the other to say so:
# run one after the other, the first never sees the second and prints "alone".
MEET = """
import os, time
from pathlib import Path
here, other = Path({here!r}), Path({other!r})
here.touch()
for _ in range(600):
    if other.exists():
        break
    time.sleep(0.1)
print("met the other notebook" if other.exists() else "alone", "threads", os.environ.get("OMP_NUM_THREADS"))
"""


def _notebook(folder: Path, name: str, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, folder / name)


def test_notebooks_run_side_by_side_with_the_threads_shared_out(build_course, tmp_path, monkeypatch, capsys):
    notebooks, out = tmp_path / "notebooks", tmp_path / "build"
    notebooks.mkdir()
    _notebook(notebooks, "01_a.ipynb", MEET.format(here=str(tmp_path / "a"), other=str(tmp_path / "b")))
    _notebook(notebooks, "02_b.ipynb", MEET.format(here=str(tmp_path / "b"), other=str(tmp_path / "a")))
    _notebook(notebooks, "03_fails.ipynb", "raise RuntimeError('a broken notebook')")
    monkeypatch.setattr(build_course, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(build_course, "cpu_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    code = build_course.main(["--out", str(out), "--jobs", "2"])

    assert code == 1, "a failing notebook makes the build fail"
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["notebooks"]) == ["01_a.ipynb", "02_b.ipynb", "03_fails.ipynb"], "listed in course order"
    assert "a broken notebook" in summary["notebooks"]["03_fails.ipynb"]["error"]
    assert summary["jobs"] == 2 and summary["threads_per_notebook"] == 2, "4 cores shared by 2 kernels"
    for name in ("01_a.ipynb", "02_b.ipynb"):
        entry = summary["notebooks"][name]
        assert entry["error"] is None and (out / name).is_file() and (out / name.replace(".ipynb", ".html")).is_file()
        assert entry["metrics"] == ["cell 1: met the other notebook threads 2"], entry
    assert summary["wall_seconds"] > 0 and summary["total_seconds"] > 0
    assert "2 at a time, 2 torch threads each" in capsys.readouterr().out


def test_one_at_a_time_keeps_torchs_default_threads(build_course, tmp_path, monkeypatch, capsys):
    notebooks, out = tmp_path / "notebooks", tmp_path / "build"
    notebooks.mkdir()
    _notebook(notebooks, "01_a.ipynb", "import os\nprint('OMP_NUM_THREADS set:', int('OMP_NUM_THREADS' in os.environ))")
    monkeypatch.setattr(build_course, "NOTEBOOKS", notebooks)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert build_course.main(["--out", str(out), "--jobs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["notebooks"]["01_a.ipynb"]["metrics"] == ["cell 1: OMP_NUM_THREADS set: 0"], "the kernel's environment is untouched"
    assert "1 at a time, torch's default threads" in capsys.readouterr().out


def test_the_slow_notebooks_start_first(build_course):
    paths = [Path(f"{n}_x.ipynb") for n in ("01", "02", "03", "06", "07", "08", "09")]
    assert [p.name[:2] for p in build_course.slowest_first(paths)] == ["07", "08", "01", "09", "02", "03", "06"]


@pytest.mark.parametrize("cores, jobs, env, expected", [(2, 2, None, 1), (16, 4, None, 4), (3, 2, None, 1),
                                                        (8, 1, None, None), (8, 4, "3", 3), (8, 1, "2", 2)])
def test_threads_per_kernel(build_course, monkeypatch, cores, jobs, env, expected):
    monkeypatch.setattr(build_course, "cpu_cores", lambda: cores)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert build_course.threads_per_kernel(jobs) == expected


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_a_bad_number_of_jobs_is_refused_by_name(build_course, capsys, jobs):
    with pytest.raises(SystemExit):
        build_course.parse_args(["--jobs", jobs])
    assert "--jobs" in capsys.readouterr().err
