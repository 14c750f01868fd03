#!/usr/bin/env bash
# The tests: unit tests of vae_course plus every notebook executed by nbval (fast mode, CPU),
# then, as a second step, the browser tests (pytest marker `browser`: headless Chromium opens the
# slide decks and JupyterLab). scripts/setup_browser.sh installs what that step needs.
#   bash scripts/test.sh              # everything: `pytest -m "not browser"`, then `pytest -m browser`
#   bash scripts/test.sh tests/test_losses.py -x   # extra arguments go to one pytest run, as given
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-fast}"
source scripts/setup_browser.sh
if [ $# -gt 0 ]; then
    exec .venv/bin/python -m pytest "$@"
fi
status=0
.venv/bin/python -m pytest -m "not browser" || status=$?
echo "test.sh: step 2 of 2, the browser tests (headless Chromium)"
.venv/bin/python -m pytest -m browser || status=$?
exit "$status"
