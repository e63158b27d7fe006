#!/usr/bin/env bash
# Benchmarks of stask (see scripts/BENCHMARKS.md): builds the release binaries, the
# benchmark driver and the peer (effectum), runs every benchmark, prints a table and
# writes the same figures to target/bench/results.json.
#
#   scripts/bench.sh [--quick|--full] [-- DRIVER-ARGS...]
#
#   --quick   (default) N = 10,000 tasks, 3 runs of each benchmark; a few minutes
#   --full    N = 100,000 tasks, 3 runs, 1M-task reads, 300k-task clean-up
#
# Anything after `--` goes to the driver, e.g. `-- --only burndown,peer`.
# STASK_BENCH_BIN=DIR benchmarks the stask binary and example libraries in DIR
# instead of building the working tree (e.g. a build of another commit); the ingest
# benchmark also needs libstask_fixture_misbehaving.so there.
#
# Needs only the Rust toolchain. Temporary homes live under target/bench/work and are
# removed afterwards; the driver and the peer build into target/bench-build, apart
# from the main build (target/release, or $CARGO_TARGET_DIR/release).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) mode=quick ;;
        --full) mode=full ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        --)
            shift
            break
            ;;
        *)
            echo "usage: scripts/bench.sh [--quick|--full] [-- DRIVER-ARGS...]" >&2
            exit 2
            ;;
    esac
    shift
done

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
if [ "$(uname)" != Linux ]; then
    echo "error: the benchmarks read /proc and need Linux" >&2
    exit 1
fi

if [ -n "${STASK_BENCH_BIN:-}" ]; then
    bin="$STASK_BENCH_BIN"
else
    echo "Building stask, the example workers and the misbehaving fixture (release)…" >&2
    # The fixture's big-file action is the result-ingest benchmark's task.
    cargo build --release -p stask -p stask-worker-demo -p stask-worker-product \
        -p stask-fixture-misbehaving
    bin="${CARGO_TARGET_DIR:-target}/release"
fi

bench_target="$PWD/target/bench-build"
echo "Building the benchmark driver and the peer (release, $bench_target)…" >&2
CARGO_TARGET_DIR="$bench_target" cargo build --release --locked \
    --manifest-path scripts/bench/driver/Cargo.toml --workspace
CARGO_TARGET_DIR="$bench_target" cargo build --release --locked \
    --manifest-path scripts/bench/effectum-peer/Cargo.toml

mkdir -p target/bench
exec "$bench_target/release/stask-bench" \
    --mode "$mode" \
    --repo . \
    --bin "$bin" \
    --peer "$bench_target/release/effectum-peer" \
    --bench-lib "$bench_target/release/libstask_bench_lib.so" \
    --out target/bench \
    "$@"
