#!/usr/bin/env bash
# Runs every test: formatting and clippy, SDK unit tests, example-worker tests, storage
# unit and conformance tests, host unit tests, the end-to-end tests that drive the real
# `stask` binary against real plugin libraries, the HTTP API's contract test
# (schemathesis against openapi.json) and the browser tests.
# Needs the Rust toolchain (SQLite is bundled), python3 (the contract test installs
# schemathesis into a venv of its own) and PostgreSQL on 127.0.0.1:5432 (started, or
# installed, by scripts/postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi

# The PostgreSQL backend's conformance suite and the several-hosts tests need a local
# server: started (installed where missing) when it does not answer.
scripts/postgres.sh

# Style first: formatting and lints are part of the suite.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The benchmark driver links the workspace's crates but has a lock file of its own
# (bench.sh builds it --locked): a new dependency of ours must be in it too.
cargo metadata --locked --format-version 1 --manifest-path scripts/bench/driver/Cargo.toml >/dev/null

# The end-to-end tests use the built binary and plugin libraries, so build everything
# first (one shared target directory).
cargo build --workspace --all-targets
cargo test --workspace

# The HTTP API against its own OpenAPI description: schemathesis (installed into a
# cached venv when missing) drives a real `stask serve` with every check it has.
tests/contract/run.sh

# The web interface in a real browser (headless Chromium); installs Chromium and
# playwright-core when missing. Screenshots land in target/browser-artifacts/.
tests/browser/run.sh
