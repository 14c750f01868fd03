"""Checks on the repository itself: notebooks committed clean, the conda environment and
pyproject in step, the README's two commands being the ones CI and users run."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_course_has_the_five_notebooks_in_order():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers[:5] == ["01", "02", "03", "04", "05"], numbers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} stores widget state in its metadata"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_opens_with_aims_and_ends_with_exercises(path):
    nb = json.loads(path.read_text())
    markdown = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
    first = "".join(markdown[0]["source"]).lower()
    assert first.startswith("#"), f"{path.name}: the first cell should be a title"
    # The checked exercises (cells with ids "exercise-...") follow the summary and the open exercises.
    course = [c for c in markdown if not c.get("id", "").startswith("exercise-")]
    text = "\n".join("".join(c["source"]) for c in course[-3:]).lower()
    assert "summary" in text and "exercise" in text, f"{path.name}: should end with a summary and exercises"


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for reqs in project["optional-dependencies"].values() for r in reqs]
    wanted = {_name(r) for r in project["dependencies"] + extras}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip = {_name(r) for r in pip_section if not r.startswith("-e")}
    assert "conda-forge" in env["channels"]
    assert any(r.startswith("-e .") for r in pip_section), "environment.yml's pip section must install this package"
    assert conda | pip == wanted, f"only in environment.yml: {(conda | pip) - wanted}; only in pyproject: {wanted - (conda | pip)}"
    assert not (conda & pip), f"listed twice: {conda & pip}"


def test_torch_pinned_identically():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [r for r in project["dependencies"] if _name(r) == "torch"]
    assert pins == ["torch==2.13.0"], pins
    assert "torch==2.13.0" in (ROOT / "environment.yml").read_text()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/course.sh" in readme
    assert re.search(r"^exec bash scripts/test.sh\s*$", ci, re.M), ".ci/run must call the README's test command"
