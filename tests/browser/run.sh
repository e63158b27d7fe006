#!/usr/bin/env bash
# Browser tests of the web interface: a real `stask serve` (target/debug, built by
# `cargo build --workspace --all-targets`) driven in headless Chromium by playwright-core
# through node's built-in test runner. Installs what it needs when missing: Debian's
# chromium (apt-get), and playwright-core and axe-core from npm into
# tests/browser/node_modules (the versions of package-lock.json; no browser download).
# Screenshots: target/browser-artifacts/.
# One file: tests/browser/run.sh tests/a11y.test.mjs (paths relative to tests/browser).
set -euo pipefail
cd "$(dirname "$0")"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: $* missing and apt-get is not available; install $* by hand" >&2
        exit 1
    fi
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

CHROMIUM="${STASK_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
# The scale test writes its million tasks with the sqlite3 shell.
if ! command -v sqlite3 >/dev/null 2>&1; then
    apt_install sqlite3
fi
if [ ! -f node_modules/playwright-core/package.json ] || [ ! -f node_modules/axe-core/axe.min.js ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

# A whole run starts with no artifacts; a run of some files keeps the others'.
if [ $# -eq 0 ]; then rm -rf ../../target/browser-artifacts; fi
STASK_CHROMIUM="$CHROMIUM" node --test --test-concurrency=1 "${@:-tests/}"
