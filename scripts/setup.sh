#!/usr/bin/env bash
# Set up (or reuse) the course's virtual environment in .venv. Needs only bash (3.2 or newer, as
# on macOS) and Python >= 3.10 with venv and pip: hashing and stamps go through Python
# (scripts/stamp.py). torch is pinned (torch==2.13.0 in pyproject.toml) so pip takes the CPU build
# where one is provided locally instead of gigabytes of CUDA packages.
# Sourced by scripts/course.sh and scripts/test.sh; safe to run again (re-installs only when
# pyproject.toml changed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "setup: '$PYTHON' not found: install Python 3.10 or newer (README.md, 'Before you start'), or set PYTHON=/path/to/python3" >&2
        exit 1
    fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
        echo "setup: Python 3.10 or newer is needed; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
        exit 1
    fi
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv || {
        echo "setup: '$PYTHON -m venv' failed (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
        rm -rf .venv
        exit 1
    }
fi
if ! .venv/bin/python scripts/stamp.py check .venv/.vae_course-installed pyproject.toml; then
    echo "setup: installing vae_course and its dependencies into .venv (a few minutes the first time; log: .venv/setup.log)"
    # pip's own notices go to the log, not the learner's console; on failure its tail is shown.
    if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e ".[dev]"; } > .venv/setup.log 2>&1; then
        tail -n 25 .venv/setup.log >&2
        echo "setup: pip failed; the whole log is .venv/setup.log" >&2
        exit 1
    fi
    .venv/bin/python scripts/stamp.py write .venv/.vae_course-installed pyproject.toml
fi
export PATH="$PWD/.venv/bin:$PATH"
