#!/usr/bin/env bash
# The main job: execute every notebook top to bottom in full mode and write the executed
# notebooks, an HTML page for each and their figures to build/.
#   bash scripts/course.sh            # full mode (what a learner reads)
#   VAE_COURSE_MODE=fast bash scripts/course.sh   # a quick smoke run
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-full}"
exec .venv/bin/python scripts/build_course.py "$@"
