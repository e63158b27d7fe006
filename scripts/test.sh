#!/usr/bin/env bash
# Runs every test: formatting and clippy, SDK unit tests, example-worker tests, storage
# unit and conformance tests, host unit tests, the end-to-end tests that drive the real
# `stask` binary against real plugin libraries, and the browser tests.
# Needs only the Rust toolchain (SQLite is bundled).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi

# Style first: formatting and lints are part of the suite.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings

# The end-to-end tests use the built binary and plugin libraries, so build everything
# first (one shared target directory).
cargo build --workspace --all-targets
cargo test --workspace

# The web interface in a real browser (headless Chromium); installs Chromium and
# playwright-core when missing. Screenshots land in target/browser-artifacts/.
tests/browser/run.sh
