#!/usr/bin/env bash
# Lecture slides: a reveal.js deck per notebook, build/slides/NN_name.slides.html, from the cells'
# slide metadata and the executed notebooks in build/ (so every figure is there). Notebooks with
# no executed copy in build/ yet are executed first (full mode unless VAE_COURSE_MODE says fast).
# reveal.js and MathJax are copied beside the decks: they open offline, from file://.
#   bash scripts/slides.sh            # every notebook
#   bash scripts/slides.sh 03 04      # notebooks 03 and 04
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
bash scripts/setup_browser.sh js
export VAE_COURSE_MODE="${VAE_COURSE_MODE:-full}"
missing=()
for nb in notebooks/[0-9][0-9]_*.ipynb; do
    name="$(basename "$nb")"
    if [ $# -gt 0 ] && [[ ! " $* " =~ " ${name:0:2} " ]] && [[ ! " $* " =~ " $name " ]]; then continue; fi
    [ -f "build/$name" ] || missing+=("${name:0:2}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "slides: executing ${missing[*]} first (no executed copy in build/)"
    .venv/bin/python scripts/build_course.py "${missing[@]}"
fi
exec .venv/bin/python scripts/build_slides.py "$@"
