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
# One model cache for both steps: nbval trains the notebooks' shared VAEs once in step 1 (the
# determinism test retrains them with the cache off), step 2's page build loads them.
# Shared by the two steps: the model cache, and the fast course build that the determinism test makes
# and the browser tests read (tests/conftest.py: course_build).
work="$(mktemp -d "${TMPDIR:-/tmp}/vae_course-tests-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export VAE_COURSE_TEST_BUILD="$work/build"
if [ -z "${VAE_COURSE_CACHE_DIR:-}" ]; then
    export VAE_COURSE_CACHE_DIR="$work/models"
    mkdir "$VAE_COURSE_CACHE_DIR"
fi
status=0
.venv/bin/python -m pytest -m "not browser" || status=$?
if [ "$browser" = 0 ]; then
    echo "test.sh: step 2 of 2, the browser tests (headless Chromium)"
    .venv/bin/python -m pytest -m browser || status=$?
else
    echo "test.sh: skipped step 2 of 2, the browser tests: no Chromium/npm set-up here. Debian/Ubuntu:" \
         "'sudo apt-get install chromium npm'; elsewhere: 'export VAE_COURSE_CHROMIUM=/path/to/chrome'" \
         "(and install Node.js for npm); with internet: '.venv/bin/python -m playwright install chromium'."
fi
exit "$status"
