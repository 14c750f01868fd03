#!/usr/bin/env bash
# The tests: unit tests of vae_course plus every notebook executed by nbval (fast mode, CPU), then,
# as a second step, the browser tests (pytest marker `browser`: headless Chromium opens the reading
# pages, the website, the slide decks and JupyterLab); those that only read the fast course build
# run beside step 1 on the spare cores once that build is done. scripts/setup_browser.sh sets up
# what step 2 needs; where it cannot (no Chromium, no npm, not root), the first step still runs and
# one line says what was skipped and how to enable it. Under CI (CI=true) the browser step is required.
#   bash scripts/test.sh              # everything: `pytest -m "not browser"`, and `pytest -m browser`
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
# step 2's JupyterLab tests load them), and the fast course build (tests/conftest.py: course_build) that
# the determinism test compares with nbval's run and the browser tests read.
work="$(mktemp -d "${TMPDIR:-/tmp}/vae_course-tests-XXXXXX")"
background=""
trap '[ -n "$background" ] && kill "$background" 2>/dev/null; rm -rf "$work"' EXIT
export VAE_COURSE_TEST_BUILD="$work/build"
if [ -z "${VAE_COURSE_CACHE_DIR:-}" ]; then
    export VAE_COURSE_CACHE_DIR="$work/models"
    mkdir "$VAE_COURSE_CACHE_DIR"
fi
# One torch thread per process: the unit tests' tensors are tiny, and the course build (below) and
# nbval's kernels must do the same arithmetic for the determinism test to compare them.
threads="${OMP_NUM_THREADS:-1}"
# Step 1 runs one test at a time, on one core. Beside it, in the background, on the other cores:
# the fast course build (all but one core, one notebook per core, at most 4; the determinism test
# waits for it), then the browser tests that read only that build (the reading pages, the website,
# the slides), in the time step 1 still takes. The JupyterLab tests run after step 1 (they execute
# notebooks in a kernel of their own). Step 2's output is shown after step 1's.
jobs="$(.venv/bin/python -c 'import sys; sys.path.insert(0, "scripts"); import build_course as b
print(max(1, min(b.cpu_cores() - 1, b.MAX_JOBS)))')"
echo "test.sh: step 1 of 2 (package and notebooks); beside it, in the background, the fast course build" \
     "($jobs notebook(s) at a time)$([ "$browser" = 0 ] && echo ', then the browser tests of the pages it built')"
(
    trap 'kill "$child" 2>/dev/null; exit 143' TERM   # test.sh ends early: stop what runs here too
    OMP_NUM_THREADS="$threads" VAE_COURSE_MODE=fast VAE_COURSE_OFFLINE=1 VAE_COURSE_CACHE_DIR=off \
        .venv/bin/python scripts/build_course.py --out "$VAE_COURSE_TEST_BUILD" --jobs "$jobs" > "$work/build.log" 2>&1 &
    child=$!
    wait "$child" || true   # a failing notebook is the determinism and page tests' to report
    if [ "$browser" = 0 ]; then
        OMP_NUM_THREADS="$threads" .venv/bin/python -m pytest -m browser --ignore=tests/test_widgets_browser.py \
            > "$work/pages.log" 2>&1 &
        child=$!
        pages=0
        wait "$child" || pages=$?
        echo "$pages" > "$work/pages.status"
    fi
) &
background=$!
status=0
OMP_NUM_THREADS="$threads" .venv/bin/python -m pytest -m "not browser" || status=$?
wait "$background" || true
background=""
if [ ! -f "$VAE_COURSE_TEST_BUILD/summary.json" ]; then
    echo "test.sh: the background course build wrote no summary; the end of its log:" >&2
    tail -n 20 "$work/build.log" >&2
else
    echo "test.sh: the fast course build: $(tail -n 1 "$work/build.log" | cut -d';' -f1))"
fi
if [ "$browser" = 0 ]; then
    echo "test.sh: step 2 of 2, the browser tests (headless Chromium): the pages, the website and the slides" \
         "(run beside step 1, once the build was done):"
    cat "$work/pages.log"
    pages="$(cat "$work/pages.status" 2>/dev/null || echo 1)"
    [ "$pages" = 0 ] || status="$pages"
    echo "test.sh: step 2 of 2, the browser tests: the widgets in JupyterLab"
    .venv/bin/python -m pytest -m browser tests/test_widgets_browser.py || status=$?
else
    echo "test.sh: skipped step 2 of 2, the browser tests: no Chromium/npm set-up here. Debian/Ubuntu:" \
         "'sudo apt-get install chromium npm'; elsewhere: 'export VAE_COURSE_CHROMIUM=/path/to/chrome'" \
         "(and install Node.js for npm); with internet: '.venv/bin/python -m playwright install chromium'."
fi
exit "$status"
