#!/usr/bin/env bash
# The tests: unit tests of vae_course plus every notebook executed by nbval (fast mode, CPU).
#   bash scripts/test.sh              # everything
#   bash scripts/test.sh tests/test_losses.py -x   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-fast}"
exec .venv/bin/python -m pytest "$@"
