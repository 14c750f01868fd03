#!/usr/bin/env bash
# What the lecture slides and the browser tests need, on top of scripts/setup.sh's .venv:
#   * reveal.js and MathJax from the npm registry (slides/package-lock.json) into slides/node_modules,
#   * a Chromium or Chrome: $VAE_COURSE_CHROMIUM if set, else one on the PATH (chromium,
#     chromium-browser, google-chrome), else the macOS apps; as root on Debian, apt-get installs
#     chromium (and npm) when they are missing,
#   * the Python packages of the `browser` extra (Playwright, which drives that browser: no
#     browser download).
# Run it as a command (not sourced). Progress goes to stderr; on success the last line on stdout is
# the browser's path. Each part is skipped when its stamp is current (well under a second).
#   bash scripts/setup_browser.sh        everything; exit 0 ready, 2 not available here (the
#                                        message says what would enable it), 1 failed
#   bash scripts/setup_browser.sh js     only reveal.js/MathJax (what building slides needs)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=.venv/bin/python

say() { echo "setup: $*" >&2; }

# The one line that says how to get what is missing (Debian, elsewhere, with internet).
how_to_enable() {
    echo "to enable it: Debian/Ubuntu 'sudo apt-get install chromium npm'; elsewhere install Chrome or Chromium" \
         "and Node.js, then 'export VAE_COURSE_CHROMIUM=/path/to/chrome'; with internet," \
         "'.venv/bin/python -m playwright install chromium' and VAE_COURSE_CHROMIUM set to the browser it prints"
}

is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
    is_root && command -v apt-get >/dev/null 2>&1 || return 1
    say "installing Debian's $* (apt-get, a minute or two)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

setup_slides_js() {
    local stamp="slides/node_modules/.vae_course-installed"
    "$PY" scripts/stamp.py check "$stamp" slides/package-lock.json && return 0
    if ! command -v npm >/dev/null 2>&1 && ! apt_install npm; then
        say "npm is missing: it installs reveal.js and MathJax for the slides; $(how_to_enable)"
        return 2
    fi
    say "installing reveal.js and MathJax into slides/node_modules (npm ci)"
    npm ci --prefix slides --no-audit --no-fund --loglevel=error >&2
    "$PY" scripts/stamp.py write "$stamp" slides/package-lock.json
}

find_chromium() {
    if [ -n "${VAE_COURSE_CHROMIUM:-}" ]; then
        if [ -x "$VAE_COURSE_CHROMIUM" ]; then echo "$VAE_COURSE_CHROMIUM"; return 0; fi
        say "VAE_COURSE_CHROMIUM: expected an executable Chrome or Chromium, got '$VAE_COURSE_CHROMIUM'"
        return 1
    fi
    local name
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    done
    for name in "/Applications/Chromium.app/Contents/MacOS/Chromium" \
                "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"; do
        if [ -x "$name" ]; then echo "$name"; return 0; fi
    done
    return 2
}

setup_chromium() {
    local status=0
    find_chromium || status=$?
    [ "$status" = 2 ] || return "$status"
    if apt_install chromium; then find_chromium; return $?; fi
    say "no Chrome or Chromium found (VAE_COURSE_CHROMIUM unset, none on the PATH); $(how_to_enable)"
    return 2
}

setup_browser_python() {
    local stamp=".venv/.vae_course-browser-installed"
    "$PY" scripts/stamp.py check "$stamp" pyproject.toml && return 0
    say "installing the browser extra (Playwright) into .venv"
    # Playwright's pip package brings its driver only; the browser is the one found above.
    if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install -e ".[dev,browser]" > .venv/setup-browser.log 2>&1; then
        tail -n 25 .venv/setup-browser.log >&2
        say "pip failed; the whole log is .venv/setup-browser.log"
        return 1
    fi
    "$PY" scripts/stamp.py write "$stamp" pyproject.toml
}

setup_slides_js
if [ "${1:-all}" = js ]; then exit 0; fi
chromium="$(setup_chromium)"
setup_browser_python
echo "$chromium"
