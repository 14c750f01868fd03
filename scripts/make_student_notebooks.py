"""Generate the student notebooks (notebooks/student/) from the course's solution notebooks.

The notebooks in notebooks/ are the complete course, solutions included: CI, the main job and the
slides use them. Learners open notebooks/student/, where every solution is replaced by a stub.
Markers (see notebooks/README.md, "Exercises and solutions"):

* In a code cell, the lines from ``# BEGIN SOLUTION`` to ``# END SOLUTION`` (both included) become
  ``raise NotImplementedError("Exercise NN.K: your code here")``, indented like the BEGIN line.
* A code cell whose first line is ``# SOLUTION`` becomes that one ``raise`` line.
* A Markdown cell whose first line is ``<!-- SOLUTION -->`` becomes "*Your answer here.*".

NN.K comes from the cell id ``exercise-NN-K-...``. The speaker notes (cells of slide type "notes",
the "Say:" cells) are for the slides and are left out. Outputs are cleared; cell ids and metadata are
kept. Every numbered notebook (``NN_*.ipynb``) with at least one marker gets a student version.

    .venv/bin/python scripts/make_student_notebooks.py           # write notebooks/student/
    .venv/bin/python scripts/make_student_notebooks.py --check   # exit 1 if any is out of date
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END, WHOLE_CELL, MARKDOWN_ANSWER = "# BEGIN SOLUTION", "# END SOLUTION", "# SOLUTION", "<!-- SOLUTION -->"
ANSWER_PLACEHOLDER = "*Your answer here.* (Double-click this cell to write it.)"


class MarkerError(ValueError):
    """A solution marker is malformed (unmatched, nested, or in the wrong kind of cell)."""


def exercise_number(cell_id: str) -> str:
    """``exercise-03-2-solution`` -> ``03.2``; other ids -> ``?``."""
    match = re.match(r"exercise-(\d+)-(\d+)", cell_id or "")
    return f"{match.group(1)}.{match.group(2)}" if match else "?"


def stub(indent: str, cell_id: str) -> str:
    return f'{indent}raise NotImplementedError("Exercise {exercise_number(cell_id)}: your code here")'


def _first_line(source: str) -> str:
    return source.lstrip("\n").split("\n", 1)[0].strip()


def has_markers(nb) -> bool:
    for cell in nb.cells:
        if cell.cell_type == "code" and (BEGIN in cell.source or _first_line(cell.source) == WHOLE_CELL):
            return True
        if cell.cell_type == "markdown" and _first_line(cell.source) == MARKDOWN_ANSWER:
            return True
    return False


def strip_code(source: str, cell_id: str, where: str) -> str:
    """Replace each BEGIN..END block of a code cell by a stub; check the markers are well formed."""
    if _first_line(source) == WHOLE_CELL:
        return stub("", cell_id)
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {number}: '{BEGIN}' inside another solution block")
            inside = True
            out.append(stub(line[: len(line) - len(line.lstrip())], cell_id))
        elif marker == END:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif marker.startswith(("# BEGIN SOLUTION", "# END SOLUTION")):
            raise MarkerError(f"{where}, line {number}: write the marker alone on its line, got {marker!r}")
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' without a matching '{END}'")
    return "\n".join(out)


def is_speaker_note(cell) -> bool:
    """A cell for the slides only: slide type "notes" (the "Say:" cells)."""
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type") == "notes"


def student_version(nb, name: str = "notebook"):
    """A copy of ``nb`` without speaker notes, with solutions replaced by stubs and outputs cleared."""
    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if not is_speaker_note(cell)]
    for cell in nb.cells:
        where = f"{name}, cell {cell.get('id', '?')}"
        if cell.cell_type == "code":
            cell.source = strip_code(cell.source, cell.get("id", ""), where)
            cell.outputs, cell.execution_count = [], None
        else:
            if BEGIN in cell.source or END in cell.source:
                raise MarkerError(f"{where}: solution markers belong in code cells, not in {cell.cell_type} cells")
            if _first_line(cell.source) == MARKDOWN_ANSWER:
                cell.source = ANSWER_PLACEHOLDER
    nb.metadata.pop("widgets", None)
    return nb


def sources(source_dir: Path) -> list[Path]:
    return sorted(p for p in source_dir.glob("[0-9][0-9]_*.ipynb"))


def generate(source_dir: Path) -> dict[str, str]:
    """File name -> the student notebook's text, for every source notebook that has markers."""
    result = {}
    for path in sources(source_dir):
        nb = nbformat.read(path, as_version=4)
        if has_markers(nb):
            result[path.name] = nbformat.writes(student_version(nb, path.name)) + "\n"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a student notebook is out of date")
    parser.add_argument("--source-dir", type=Path, default=ROOT / "notebooks")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: SOURCE_DIR/student")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or args.source_dir / "student"
    try:
        wanted = generate(args.source_dir)
    except MarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    existing = {p.name for p in out_dir.glob("*.ipynb")} if out_dir.is_dir() else set()
    stale = sorted(name for name, text in wanted.items()
                   if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != text)
    orphans = sorted(existing - set(wanted))
    if args.check:
        for name in stale:
            print(f"out of date: {out_dir / name}", file=sys.stderr)
        for name in orphans:
            print(f"no source notebook with exercises for: {out_dir / name}", file=sys.stderr)
        if stale or orphans:
            print("run: .venv/bin/python scripts/make_student_notebooks.py", file=sys.stderr)
            return 1
        print(f"{len(wanted)} student notebooks up to date in {out_dir}")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (out_dir / name).write_text(wanted[name], encoding="utf-8")
        print(f"wrote {out_dir / name}")
    for name in orphans:
        (out_dir / name).unlink()
        print(f"removed {out_dir / name} (its source has no exercises any more)")
    print(f"{len(wanted)} student notebooks in {out_dir} ({len(stale)} updated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
