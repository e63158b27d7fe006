#!/usr/bin/env bash
# Builds stask and the example workers, sets up a home directory with the examples
# discovered and active, and runs a few demo tasks.
#
#   STASK_HOME   home directory (default: ./stask-home)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi

export STASK_HOME="${STASK_HOME:-$PWD/stask-home}"
cargo build --release -p stask -p stask-worker-demo -p stask-worker-product
stask=target/release/stask
ext=so
[ "$(uname)" = Darwin ] && ext=dylib

"$stask" init
for lib in stask_worker_demo stask_worker_product; do
    install -m 0755 "target/release/lib$lib.$ext" "$STASK_HOME/plugins/lib$lib.$ext"
done
mkdir -p "$STASK_HOME/imports"
cp plugins/product-import/examples/products.csv "$STASK_HOME/imports/products.csv"

"$stask" workers discover --activate
"$stask" workers rescan
"$stask" workers list

echo
echo "Queueing demo tasks…"
"$stask" tasks create product import --data '{"file": "products.csv"}'
"$stask" tasks create demo run --data '{"steps": 5, "step_ms": 200}' --priority high
"$stask" tasks process
echo
"$stask" tasks list --limit 5
echo
echo "stask is ready. Try:"
echo "  export STASK_HOME=$STASK_HOME"
echo "  $stask tasks create demo run --data '{\"steps\": 20}'"
echo "  $stask tasks process            # or: $stask tasks execute ID"
echo "  $stask tasks show ID; $stask tasks logs ID --follow"
