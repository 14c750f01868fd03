#!/usr/bin/env bash
# The main job: execute every notebook top to bottom in full mode and write the executed
# notebooks, an HTML page for each and their figures to build/, the slide decks to build/slides/
# and the course's website to build/site/ (open build/site/index.html). The notebooks run side by
# side, one per CPU core (at most 4); the cores' torch threads are shared out among them.
#   bash scripts/course.sh            # full mode (what a learner reads)
#   VAE_COURSE_MODE=fast bash scripts/course.sh   # a quick smoke run
#   bash scripts/course.sh 03 04      # only notebooks 03 and 04
#   bash scripts/course.sh --jobs 1   # one notebook at a time, with all the threads
#   bash scripts/course.sh --help     # this text, after the set-up
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-full}"
jobs=""
notebooks=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,10p' scripts/course.sh | cut -c3-; exit 0 ;;
        --jobs) jobs="--jobs=${2:-}"; shift; [ $# -gt 0 ] && shift ;;
        --jobs=*) jobs="$1"; shift ;;
        *) notebooks="$notebooks $1"; shift ;;   # numbers or file names: no spaces in them
    esac
done
# shellcheck disable=SC2086
.venv/bin/python scripts/build_course.py $jobs $notebooks
# The slide decks (a few seconds), linked from the website: they need reveal.js from npm.
if [ -d slides/node_modules/reveal.js ]; then
    # shellcheck disable=SC2086
    .venv/bin/python scripts/build_slides.py $notebooks
else
    echo "slides: not built (reveal.js comes from npm: bash scripts/setup_browser.sh js, then bash scripts/slides.sh)"
fi
# The website: build/site/ from the executed notebooks (open build/site/index.html).
exec .venv/bin/python scripts/build_site.py
