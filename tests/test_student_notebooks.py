"""The student notebooks (notebooks/student/): generated from the solution notebooks by
scripts/make_student_notebooks.py, up to date, free of solution text, and each runs on a fresh
kernel up to its first exercise stub, which raises NotImplementedError."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "notebooks"
STUDENT_DIR = SOURCE_DIR / "student"
CORE = sorted(SOURCE_DIR.glob("0[1-5]_*.ipynb"))   # the core course: every notebook has checked exercises
# ... and every notebook that has a student version (09 too; 06-08 have open exercises only)
COURSE = sorted({*CORE, *(p for p in SOURCE_DIR.glob("[0-9][0-9]_*.ipynb") if (STUDENT_DIR / p.name).exists())})

_spec = importlib.util.spec_from_file_location("make_student_notebooks", ROOT / "scripts" / "make_student_notebooks.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


def _read(path):
    return nbformat.read(path, as_version=4)


def test_student_notebooks_are_up_to_date(capsys):
    assert make.main(["--check"]) == 0, capsys.readouterr().err
    students = {p.name for p in STUDENT_DIR.glob("*.ipynb")}
    assert {p.name for p in CORE} <= students, "notebooks 01-05 all have exercises, so all have a student version"


def test_check_fails_when_a_source_changes(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(COURSE[0], source)
    out = tmp_path / "out"
    assert make.main(["--source-dir", str(source), "--out-dir", str(out)]) == 0
    assert make.main(["--check", "--source-dir", str(source), "--out-dir", str(out)]) == 0
    nb = _read(source / COURSE[0].name)
    cell = next(c for c in nb.cells if c.cell_type == "code" and make.BEGIN in c.source)
    cell.source = cell.source.replace(make.END, "print('only the solution changed')\n" + make.END, 1)
    nbformat.write(nb, source / COURSE[0].name)
    assert make.main(["--check", "--source-dir", str(source), "--out-dir", str(out)]) == 0, \
        "a change inside a solution leaves the student notebook as it is"
    cell.source = cell.source.replace(make.END, make.END + "\nprint('a new line outside the solution')", 1)
    nbformat.write(nb, source / COURSE[0].name)
    capsys.readouterr()
    assert make.main(["--check", "--source-dir", str(source), "--out-dir", str(out)]) == 1
    assert "out of date" in capsys.readouterr().err
    (out / "99_orphan.ipynb").write_text("{}")
    assert make.main(["--source-dir", str(source), "--out-dir", str(out)]) == 0
    assert not (out / "99_orphan.ipynb").exists(), "a student notebook without a source is removed"
    assert make.main(["--check", "--source-dir", str(source), "--out-dir", str(out)]) == 0


@pytest.mark.parametrize("source, message", [
    ("# BEGIN SOLUTION\nx = 1\n", "without a matching"),
    ("x = 1\n# END SOLUTION\n", "without a '# BEGIN SOLUTION' before it"),
    ("# BEGIN SOLUTION\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "inside another"),
    ("# BEGIN SOLUTION: x\nx = 1\n# END SOLUTION\n", "alone on its line"),
])
def test_malformed_markers_are_reported_with_the_cell(source, message):
    with pytest.raises(make.MarkerError, match=message) as info:
        make.strip_code(source, "exercise-03-2-solution", "nb, cell exercise-03-2-solution")
    assert "exercise-03-2-solution" in str(info.value)


def test_speaker_notes_stay_in_the_slides():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title", id="title"),
        nbformat.v4.new_markdown_cell("**Say:** hello", id="notes", metadata={"slideshow": {"slide_type": "notes"}}),
        nbformat.v4.new_code_cell("x = 1", id="code", metadata={"slideshow": {"slide_type": "fragment"}})])
    assert [c.id for c in make.student_version(nb).cells] == ["title", "code"]
    assert len(nb.cells) == 3, "the source notebook is left as it was"


@pytest.mark.parametrize("path", sorted(STUDENT_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_student_notebook_has_no_speaker_notes(path):
    nb = _read(path)
    notes = [c.id for c in nb.cells if make.is_speaker_note(c) or "**Say:**" in c.source]
    assert not notes, f"speaker notes (for the slides) in the student notebook: {notes}"


def test_markers_in_markdown_are_rejected():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# BEGIN SOLUTION\nx\n# END SOLUTION", id="m")])
    with pytest.raises(make.MarkerError, match="belong in code cells"):
        make.student_version(nb)


def test_stubs_keep_indentation_and_name_the_exercise():
    source = "def f(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\nprint(f)"
    out = make.strip_code(source, "exercise-04-2-solution", "here")
    assert out == 'def f(x):\n    raise NotImplementedError("Exercise 04.2: your code here")\nprint(f)'
    assert make.strip_code("# SOLUTION\nx = 3", "exercise-01-1-solution", "here") == \
        'raise NotImplementedError("Exercise 01.1: your code here")'


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_source_markers_are_well_formed(path):
    nb = _read(path)
    make.student_version(nb, path.name)   # raises MarkerError on unmatched, nested or misplaced markers
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.source.count(make.BEGIN) == cell.source.count(make.END), cell.id


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_student_notebook_holds_no_solution_text(path):
    source, student = _read(path), _read(STUDENT_DIR / path.name)
    kept = [c for c in source.cells if not make.is_speaker_note(c)]
    assert [c.id for c in kept] == [c.id for c in student.cells], "same cells, same ids (speaker notes aside)"
    assert [c.metadata for c in kept] == [c.metadata for c in student.cells], "metadata kept"
    text = "\n".join(c.source for c in student.cells)
    assert "SOLUTION" not in text
    solution_lines, public_lines = set(), set()
    for cell in source.cells:
        inside = False
        for line in cell.source.split("\n"):
            if cell.cell_type == "code" and line.strip() in (make.BEGIN, make.END):
                inside = line.strip() == make.BEGIN
            elif len(line.strip()) > 3:
                (solution_lines if inside else public_lines).add(line.strip())
    # a line of a solution may appear in the student notebook only where the course shows it anyway
    student_lines = {line.strip() for line in text.split("\n")}
    leaked = (solution_lines - public_lines) & student_lines
    assert not leaked, f"solution lines in the student notebook: {sorted(leaked)[:5]}"
    for cell in source.cells:
        if cell.cell_type == "markdown" and cell.source.startswith(make.MARKDOWN_ANSWER):
            answer = cell.source[len(make.MARKDOWN_ANSWER):].strip()
            assert answer[:60] not in text, f"{cell.id}: the written answer is in the student notebook"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_notebook_ends_with_at_least_three_checked_exercises(path):
    nb = _read(path)
    ids = [c.id for c in nb.cells]
    summary = max(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Summary" in c.source)
    exercise_cells = [i for i, cid in enumerate(ids) if cid.startswith("exercise-")]
    assert exercise_cells and min(exercise_cells) > summary, "the checked exercises come after the summary"
    assert exercise_cells[-1] == len(ids) - 1, "the checked exercises end the notebook"
    numbers = sorted({make.exercise_number(cid) for cid in ids if re.match(r"exercise-\d+-\d+", cid)})
    assert len(numbers) >= 3, numbers
    for number in numbers:
        prefix = "exercise-" + number.replace(".", "-")
        cells = [c for c in nb.cells if c.id == prefix or c.id.startswith(prefix + "-")]
        kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in cells]
        assert cells[0].cell_type == "markdown" and kinds[0] == "subslide", f"{number}: a statement sub-slide first"
        assert all(k == "skip" for k in kinds[1:]), f"{number}: solution and check cells are skipped in slides"
        assert any(make.BEGIN in c.source for c in cells), f"{number}: a solution between markers"
        assert any("checks." in c.source for c in cells), f"{number}: a check call"
    heading = nb.cells[exercise_cells[0]]
    assert heading.metadata.get("slideshow", {}).get("slide_type") == "slide"


def _first_stub(nb) -> int:
    return next(i for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and "raise NotImplementedError(\"Exercise" in c.source)


@pytest.mark.after_notebooks
@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_student_notebook_runs_up_to_its_first_stub(path, monkeypatch, nbval_run):
    """Every cell before the first stub succeeds on a fresh kernel (fast mode, offline); the stub raises.

    When nbval ran the solution notebook in this session (the conftest records it) and the cells before
    the stub are the solution's first code cells, unchanged, those cells have just run on a fresh kernel:
    only the stub runs here. Otherwise every cell up to the stub runs here."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("VAE_COURSE_MODE", "fast")
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    nb = _read(STUDENT_DIR / path.name)
    stub = _first_stub(nb)
    before = [c.source for c in nb.cells[:stub] if c.cell_type == "code"]
    solution_code = [c.source for c in _read(path).cells if c.cell_type == "code"]
    ran = nbval_run(path) is not None and before == solution_code[:len(before)]
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(STUDENT_DIR)}})
    failed_at, error = None, None
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells[: stub + 1]):
            if cell.cell_type != "code" or (ran and index < stub):
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as exc:
                failed_at, error = index, exc
                break
    assert failed_at == stub, f"cell {failed_at} ({nb.cells[failed_at].id if failed_at is not None else '-'}) " \
                              f"failed before the first stub (cell {stub}): {error}"
    assert error.ename == "NotImplementedError", error
    assert "your code here" in str(error)
