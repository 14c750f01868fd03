#!/usr/bin/env bash
# What the lecture slides and the browser tests need, on top of scripts/setup.sh's .venv:
#   * reveal.js and MathJax from the npm registry (slides/package-lock.json) into slides/node_modules,
#   * Debian's chromium at /usr/bin/chromium (apt-get, as root; only when it is missing),
#   * the Python packages of the `browser` extra (Playwright, which drives that chromium: no
#     browser download).
# Sourced by scripts/test.sh and scripts/slides.sh after scripts/setup.sh; each part is skipped
# when its stamp is current, so a second run takes well under a second.
#   SETUP_BROWSER_PARTS="js"   only reveal.js/MathJax (what building slides needs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

_setup_slides_js() {
    local stamp="slides/node_modules/.vae_course-installed" want
    want="$(sha256sum slides/package-lock.json | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        command -v npm >/dev/null || { echo "setup: npm is missing (Debian: apt-get install npm); it installs reveal.js and MathJax" >&2; return 1; }
        echo "setup: installing reveal.js and MathJax into slides/node_modules (npm ci)"
        npm ci --prefix slides --no-audit --no-fund --loglevel=error
        echo "$want" > "$stamp"
    fi
}

_setup_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "setup: /usr/bin/chromium is missing; as root run: apt-get install -y chromium" >&2
        return 1
    fi
    echo "setup: installing Debian's chromium (apt-get, a minute or two)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

_setup_browser_python() {
    local stamp=".venv/.vae_course-browser-installed" want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "setup: installing the browser extra (Playwright) into .venv"
        # Playwright's pip package brings its driver only; the browser is /usr/bin/chromium.
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/python -m pip install --quiet -e ".[dev,browser]"
        echo "$want" > "$stamp"
    fi
}

_setup_slides_js
if [ "${SETUP_BROWSER_PARTS:-all}" != "js" ]; then
    _setup_chromium
    _setup_browser_python
fi
export VAE_COURSE_CHROMIUM="${VAE_COURSE_CHROMIUM:-/usr/bin/chromium}"
