"""The README's two commands where learners are: a PATH with only what a stock macOS ships (no GNU
sha256sum, timeout, realpath, readlink, stat; no Chromium, npm or apt-get), and a normal user
without root. Each case runs the real scripts in a copy of the repository that reuses this
checkout's .venv (its stamp is current, so nothing is installed), with a small test file.

What cannot be tested here: bash 3.2 itself (macOS's bash; not installable on this machine), so
``test_scripts_use_no_bash4_features`` reads the scripts for the constructs bash 3.2 lacks.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"

# Commands a stock macOS has in /bin and /usr/bin (BSD versions; the GNU ones stand in here).
# Deliberately absent: sha256sum, timeout, realpath, readlink, stat, nproc, apt-get, npm, chromium.
MACOS_COMMANDS = ["bash", "sh", "cat", "cp", "mv", "rm", "mkdir", "rmdir", "ls", "ln", "chmod", "date",
                  "echo", "test", "[", "pwd", "sleep", "dirname", "basename", "env", "uname", "id", "head",
                  "tail", "tr", "sed", "grep", "awk", "cut", "sort", "uniq", "wc", "find", "xargs", "mktemp",
                  "touch", "tee", "expr", "shasum", "diff", "cmp", "which", "true", "false"]
NOT_ON_MACOS = ["sha256sum", "timeout", "realpath", "readlink", "stat", "nproc", "apt-get", "npm", "chromium"]

pytestmark = pytest.mark.skipif(not (VENV / "bin" / "python").exists() or sys.platform != "linux",
                                reason="needs this checkout's .venv (scripts/setup.sh) and Linux")


def _macos_bin(folder: Path) -> Path:
    """A folder of links to the commands a stock macOS ships, plus python3 (which a learner installs)."""
    folder.mkdir()
    for name in MACOS_COMMANDS:
        found = shutil.which(name)
        if found:
            (folder / name).symlink_to(found)
    (folder / "python3").symlink_to(Path(sys.executable).resolve())
    return folder


def _copy_repo(dest: Path) -> Path:
    """The scripts and a few tests in ``dest``, with ``.venv`` a link to this checkout's."""
    for rel in ["scripts", "pyproject.toml", "conftest.py", "tests/conftest.py", "tests/test_config.py",
                "slides/package.json", "slides/package-lock.json", "vae_course", "benchmarks", "README.md", "LICENSE"]:
        src, out = ROOT / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, out)
    (dest / ".venv").symlink_to(VENV)
    # The copy shares this checkout's .venv: its pyproject.toml must be byte-identical and the
    # install stamp current, or scripts/setup.sh would reinstall the package from the copy.
    stamp = subprocess.run([str(VENV / "bin" / "python"), str(ROOT / "scripts" / "stamp.py"), "check",
                            str(VENV / ".vae_course-installed"), str(dest / "pyproject.toml")])
    if stamp.returncode != 0:
        pytest.skip("this checkout's .venv is not current with pyproject.toml: run scripts/setup.sh first")
    return dest


@pytest.fixture
def sandbox():
    """A world-readable temporary folder (so a dropped-privilege user can use it)."""
    folder = Path(tempfile.mkdtemp(prefix="vae-course-scripts-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _run(args, cwd, path, ci=None, user=None, timeout=600):
    env = {"PATH": str(path), "HOME": str(cwd), "LANG": "C.UTF-8", "VAE_COURSE_OFFLINE": "1"}
    if ci is not None:
        env["CI"] = ci
    if user is not None:
        # Drop to this uid/gid (setpriv, util-linux). The one capability kept, reading and searching
        # any folder, lets the user run this machine's Python, which lives under /root (mode 700);
        # it grants no writes: the user still cannot install anything or write outside its folder.
        args = ["/usr/bin/setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *args]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_macos_path_really_lacks_the_gnu_tools(sandbox):
    """The stripped PATH is what the other tests claim: the GNU-only tools are not on it."""
    path = _macos_bin(sandbox / "bin")
    for name in NOT_ON_MACOS:
        assert shutil.which(name, path=str(path)) is None, name
    assert shutil.which("bash", path=str(path)) and shutil.which("python3", path=str(path))


def test_setup_help_and_tests_run_with_only_what_macos_ships(sandbox):
    repo, path = _copy_repo(sandbox / "repo"), _macos_bin(sandbox / "bin")
    setup = _run(["bash", "scripts/setup.sh"], repo, path)
    assert setup.returncode == 0, setup.stderr
    assert "command not found" not in setup.stderr

    help_ = _run(["bash", "scripts/course.sh", "--help"], repo, path)
    assert help_.returncode == 0, help_.stderr
    assert "The main job" in help_.stdout and "command not found" not in help_.stderr

    tests = _run(["bash", "scripts/test.sh", "tests/test_config.py", "-q", "-p", "no:cacheprovider"], repo, path)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-3000:]
    assert re.search(r"\d+ passed", tests.stdout), tests.stdout[-2000:]
    assert "command not found" not in tests.stderr, tests.stderr[-2000:]


def test_the_setup_notices_a_changed_pyproject(sandbox):
    """The stamp (scripts/stamp.py, Python's hashlib) tells a changed file from the installed one."""
    stamp, file = sandbox / "stamp", sandbox / "pyproject.toml"
    file.write_text("a")
    python = str(VENV / "bin" / "python")
    run = lambda *a: subprocess.run([python, str(ROOT / "scripts" / "stamp.py"), *a], capture_output=True)  # noqa: E731
    assert run("check", str(stamp), str(file)).returncode == 1          # no stamp yet
    assert run("write", str(stamp), str(file)).returncode == 0
    assert run("check", str(stamp), str(file)).returncode == 0
    file.write_text("b")
    assert run("check", str(stamp), str(file)).returncode == 1          # changed since
    assert run("bogus", str(stamp)).returncode == 2


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="dropping to a normal user needs root and setpriv")
@pytest.mark.parametrize("ci", [None, "true"], ids=["learner", "ci"])
def test_a_normal_user_without_chromium_or_npm(sandbox, ci):
    """As uid 65534 (nobody), no Chromium or npm on the PATH: the tests run and the browser step is
    reported as skipped with the command that enables it; under CI=true the set-up fails instead."""
    repo, path = _copy_repo(sandbox / "repo"), _macos_bin(sandbox / "bin")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    result = _run(["bash", "scripts/test.sh", "tests/test_config.py", "-q", "-p", "no:cacheprovider"],
                  repo, path, ci=ci, user=65534)
    out = result.stdout + result.stderr
    if ci is None:
        assert result.returncode == 0, out[-3000:]
        assert re.search(r"\d+ passed", result.stdout), out[-3000:]
        assert "sudo apt-get install chromium npm" in out and "VAE_COURSE_CHROMIUM" in out, out[-3000:]
    else:
        assert result.returncode != 0, out[-3000:]
        assert "required under CI" in out and " passed" not in result.stdout, out[-3000:]


def test_a_full_run_reports_the_skipped_browser_step_in_one_line(sandbox):
    """Without arguments test.sh runs step 1, then says in one line that step 2 was skipped and how to
    enable it; its exit status is step 1's. The copy holds one test file and no notebooks, so step 1
    takes seconds; it has no slides/node_modules and the PATH no npm or Chromium."""
    repo, path = _copy_repo(sandbox / "repo"), _macos_bin(sandbox / "bin")
    result = _run(["bash", "scripts/test.sh"], repo, path)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("test.sh: skipped step 2")]
    assert len(skipped) == 1 and "sudo apt-get install chromium npm" in skipped[0], out[-3000:]


def test_scripts_use_no_bash4_features():
    """macOS ships bash 3.2: none of the constructs it lacks appear in the scripts."""
    bash4 = re.compile(r"declare -A|local -A|mapfile|readarray|\$\{\w+(,,|\^\^)|\|&|&>>|;;&|\bcoproc\b"
                       r"|declare -n|local -n|\[\[ -v |\$\{\w+@[QEPAa]\}|\bwait -n\b")
    scripts = sorted((ROOT / "scripts").glob("*.sh")) + [ROOT / ".ci" / "run"]
    for script in scripts:
        for number, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
            assert not bash4.search(code), f"{script.name}:{number} uses a bash 4 feature: {line.strip()}"
            assert "sha256sum" not in code, f"{script.name}:{number}: sha256sum is GNU-only (use scripts/stamp.py)"


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="dropping to a normal user needs root and setpriv")
def test_the_main_job_runs_for_a_normal_user_without_chromium_or_npm(sandbox):
    """As uid 65534 with only what macOS ships on the PATH (no npm: the pages get MathJax from PyPI and
    a note instead of each widget), `bash scripts/course.sh 06` executes notebook 06 (NumPy only, a few
    seconds in fast mode) and writes its executed copy, its page and build/summary.json."""
    repo, path = _copy_repo(sandbox / "repo"), _macos_bin(sandbox / "bin")
    (repo / "notebooks").mkdir()
    shutil.copy2(ROOT / "notebooks" / "06_vae_from_scratch_numpy.ipynb", repo / "notebooks")
    subprocess.run(["chown", "-R", "65534:65534", str(repo)], check=True)
    env_extra = ["env", "VAE_COURSE_MODE=fast"]
    result = _run([*env_extra, "bash", "scripts/course.sh", "06"], repo, path, user=65534)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    build = repo / "build"
    assert (build / "06_vae_from_scratch_numpy.ipynb").is_file() and (build / "06_vae_from_scratch_numpy.html").is_file()
    assert (build / "summary.json").is_file() and (build / "lib" / "mathjax").is_dir()
    assert "WARNING" not in out and "Traceback" not in out, out[-3000:]
