#!/usr/bin/env bash
# The main job: execute every notebook top to bottom in full mode and write the executed
# notebooks, an HTML page for each and their figures to build/, the slide decks to build/slides/
# and the course's website to build/site/ (open build/site/index.html).
#   bash scripts/course.sh            # full mode (what a learner reads)
#   VAE_COURSE_MODE=fast bash scripts/course.sh   # a quick smoke run
#   bash scripts/course.sh 03 04      # only notebooks 03 and 04
#   bash scripts/course.sh --help     # this text, after the set-up
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-full}"
case "${1:-}" in
    -h|--help) sed -n '2,8p' scripts/course.sh | cut -c3-; exit 0 ;;
esac
.venv/bin/python scripts/build_course.py "$@"
# The slide decks (a few seconds), linked from the website: they need reveal.js from npm.
if [ -d slides/node_modules/reveal.js ]; then
    .venv/bin/python scripts/build_slides.py "$@"
else
    echo "slides: not built (reveal.js comes from npm: bash scripts/setup_browser.sh js, then bash scripts/slides.sh)"
fi
# The website: build/site/ from the executed notebooks (open build/site/index.html).
exec .venv/bin/python scripts/build_site.py
