#!/usr/bin/env bash
# Set up (or reuse) the course's virtual environment in .venv: Python >= 3.10 and pip are all
# that is needed. torch is pinned (torch==2.13.0 in pyproject.toml) so pip takes the CPU build
# where one is provided locally instead of gigabytes of CUDA packages.
# Sourced by scripts/course.sh and scripts/test.sh; safe to run again (re-installs only when
# pyproject.toml changed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.vae_course-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing vae_course and its dependencies into .venv (a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
