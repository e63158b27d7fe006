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
"$stask" tasks create product import --data '{"file": "products.csv"}' >/dev/null
"$stask" tasks create demo run --data '{"steps": 20, "step_ms": 500}' --priority high >/dev/null
"$stask" tasks create demo run --data '{"steps": 5, "step_ms": 200, "fail_at": 3}' --max-attempts 2 >/dev/null
"$stask" tasks list --limit 5
# A fresh password for the web interface's admin on every run, so it can be printed.
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)"
if "$stask" users list --json | grep -q '"name": *"admin"'; then
    printf '%s\n' "$password" | "$stask" users passwd admin --password-stdin >/dev/null
else
    printf '%s\n' "$password" | "$stask" users add admin --role admin --password-stdin >/dev/null
fi
bind="${STASK_BIND:-127.0.0.1:8080}"
cat <<TEXT

Starting the service (Ctrl-C stops it; running tasks get a grace period).

  Web interface:  http://$bind/
  User:           admin
  Password:       $password

Or watch from another terminal:
  export STASK_HOME=$STASK_HOME
  $stask tasks list
  $stask tasks logs ID --follow
  $stask tasks create demo run --data '{"steps": 20}'
TEXT
exec "$stask" serve --bind "$bind"
