#!/usr/bin/env bash
# The tests: unit tests of vae_course plus every notebook executed by nbval (fast mode, CPU),
# then, as a second step, the browser tests (pytest marker `browser`: headless Chromium opens the
# slide decks and JupyterLab). scripts/setup_browser.sh sets up what that step needs; where it
# cannot (no Chromium, no npm, not root), the first step still runs and one line says what was
# skipped and how to enable it. Under CI (CI=true) the browser step is required.
#   bash scripts/test.sh              # everything: `pytest -m "not browser"`, then `pytest -m browser`
#   bash scripts/test.sh tests/test_losses.py -x   # extra arguments go to one pytest run, as given
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-fast}"

browser=0
chromium="$(bash scripts/setup_browser.sh)" || browser=$?
if [ "$browser" = 0 ]; then
    export VAE_COURSE_CHROMIUM="$chromium"
elif [ "$browser" = 2 ] && [ "${CI:-}" != true ]; then
    # tests/conftest.py skips the browser tests, with this reason, when they are collected.
    export VAE_COURSE_SKIP_BROWSER="no browser set-up here (see the set-up line above)"
else
    echo "test.sh: the browser step's set-up failed${CI:+ (required under CI=true)}; see the lines above" >&2
    exit "$browser"
fi

if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
# Shared by the two steps: the model cache (nbval trains the notebooks' shared VAEs once in step 1,
# step 2's page build loads them), and the fast course build (tests/conftest.py: course_build) that
# the determinism test compares with nbval's run and the browser tests read.
work="$(mktemp -d "${TMPDIR:-/tmp}/vae_course-tests-XXXXXX")"
build_pid=""
trap '[ -n "$build_pid" ] && kill "$build_pid" 2>/dev/null; rm -rf "$work"' EXIT
export VAE_COURSE_TEST_BUILD="$work/build"
if [ -z "${VAE_COURSE_CACHE_DIR:-}" ]; then
    export VAE_COURSE_CACHE_DIR="$work/models"
    mkdir "$VAE_COURSE_CACHE_DIR"
fi
# One torch thread per process: the unit tests' tensors are tiny, and the course build (below) and
# nbval's kernels must do the same arithmetic for the determinism test to compare them.
threads="${OMP_NUM_THREADS:-1}"
# The course build runs in the background, on the cores step 1 leaves free (step 1 runs one test at
# a time): all but one core, one notebook per core, at most 4. The determinism test waits for it.
cores="$(.venv/bin/python -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)')"
jobs=$(( cores > 5 ? 4 : (cores > 1 ? cores - 1 : 1) ))
echo "test.sh: step 1 of 2 (package and notebooks); beside it, in the background, the fast course build ($jobs notebook(s) at a time)"
OMP_NUM_THREADS="$threads" VAE_COURSE_MODE=fast VAE_COURSE_OFFLINE=1 VAE_COURSE_CACHE_DIR=off \
    .venv/bin/python scripts/build_course.py --out "$VAE_COURSE_TEST_BUILD" --jobs "$jobs" > "$work/build.log" 2>&1 &
build_pid=$!
status=0
OMP_NUM_THREADS="$threads" .venv/bin/python -m pytest -m "not browser" || status=$?
wait "$build_pid" || true   # its failures are the determinism and page tests' to report
build_pid=""
if [ ! -f "$VAE_COURSE_TEST_BUILD/summary.json" ]; then
    echo "test.sh: the background course build wrote no summary; the end of its log:" >&2
    tail -n 20 "$work/build.log" >&2
else
    echo "test.sh: the fast course build: $(tail -n 1 "$work/build.log" | cut -d';' -f1))"
fi
if [ "$browser" = 0 ]; then
    echo "test.sh: step 2 of 2, the browser tests (headless Chromium)"
    .venv/bin/python -m pytest -m browser || status=$?
else
    echo "test.sh: skipped step 2 of 2, the browser tests: no Chromium/npm set-up here. Debian/Ubuntu:" \
         "'sudo apt-get install chromium npm'; elsewhere: 'export VAE_COURSE_CHROMIUM=/path/to/chrome'" \
         "(and install Node.js for npm); with internet: '.venv/bin/python -m playwright install chromium'."
fi
exit "$status"
