#!/usr/bin/env bash
# Contract test of the HTTP API: schemathesis (from PyPI, pinned) checks a real
# `stask serve` against the OpenAPI description it serves (/api/v1/openapi.json), with
# every check schemathesis has (`--checks all`): status codes, content types, headers
# and bodies as documented, schema-valid requests accepted and schema-violating ones
# refused, authentication enforced, 405s with their Allow header, created resources
# found and deleted ones gone. Any failure fails this script.
#
# Uses target/debug/stask and the example plugins built by `cargo build --workspace`
# (scripts/test.sh runs this after `cargo test`). Installs schemathesis into a venv
# cached in ${XDG_CACHE_HOME:-~/.cache}/stask-contract/ the first time (python3 with its
# venv module is needed; on Debian without it, python3-venv is installed with apt-get).
# What the configuration narrows, and why: schemathesis.toml, schemathesis-tokens.toml.
#
#   STASK_CONTRACT_EXAMPLES   test cases per operation and phase (default 50)
#   STASK_CONTRACT_SEED       the generator's seed (default: fixed, so a run can be
#                             repeated; `random` for a new one each run)
#   STASK_TARGET_DIR          build outputs (default: target/debug)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${STASK_CONTRACT_EXAMPLES:-50}"
SEED="${STASK_CONTRACT_SEED:-20260301}"
TARGET="${STASK_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}"
STASK="$TARGET/stask"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- schemathesis in its own venv, installed once --------------------------------------
CACHE_BASE="${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}"
CACHE="${CACHE_BASE:-$ROOT/target}/stask-contract"
VENV="$CACHE/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -f "$VENV/.installed" ]; then
    if ! command -v python3 >/dev/null 2>&1; then
        echo "error: python3 is needed for the contract test (schemathesis); install it" >&2
        exit 1
    fi
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1; then
            as_root apt-get update
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
        else
            echo "error: python3's venv module (with ensurepip) is missing; install it (Debian/Ubuntu: python3-venv)" >&2
            exit 1
        fi
    fi
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
    touch "$VENV/.installed"
fi
ST="$VENV/bin/schemathesis"

for f in "$STASK" "$TARGET/libstask_worker_demo.so" "$TARGET/libstask_worker_product.so"; do
    if [ ! -f "$f" ]; then
        echo "error: '$f' does not exist: run \`cargo build --workspace\` first (scripts/test.sh does)" >&2
        exit 1
    fi
done

# --- a fresh home with the example workers, and a service on a free port ---------------
# Nothing from the caller's environment may change what stask does (as in the Rust
# end-to-end tests: tests/src/lib.rs, SCRUBBED_ENV).
while IFS='=' read -r name _; do
    case "$name" in STASK_CONTRACT_*) ;; STASK_*) unset "$name" ;; esac
done < <(env)
unset RUST_LOG

WORK="$(mktemp -d "${TMPDIR:-/tmp}/stask-contract.XXXXXX")"
HOME_DIR="$WORK/home"
SERVE_PID=""
cleanup() {
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

stask() { "$STASK" --home "$HOME_DIR" "$@"; }

stask init >/dev/null
chmod 0755 "$HOME_DIR/plugins"
for lib in stask_worker_demo stask_worker_product; do
    install -m 0755 "$TARGET/lib$lib.so" "$HOME_DIR/plugins/lib$lib.so"
done
mkdir -p "$HOME_DIR/imports"
cp "$ROOT/plugins/product-import/examples/products.csv" "$HOME_DIR/imports/"
stask workers discover --activate >/dev/null

# One task at a time (so the tasks the test creates wait behind the long one below), and
# a short grace so that stopping the service at the end is quick. (The binary itself,
# not the shell function: $! must be the service's process id.)
"$STASK" --home "$HOME_DIR" serve --bind 127.0.0.1:0 --concurrency 1 --shutdown-grace-secs 1 \
    >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
ADDR_FILE="$HOME_DIR/run/http-$SERVE_PID.addr"
for _ in $(seq 300); do
    [ -s "$ADDR_FILE" ] && break
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
        echo "error: stask serve ended before it was ready:" >&2
        cat "$WORK/serve.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ ! -s "$ADDR_FILE" ]; then
    echo "error: stask serve did not write $ADDR_FILE within 30 s" >&2
    cat "$WORK/serve.log" >&2
    exit 1
fi
URL="$(cat "$ADDR_FILE")"

# Tasks in each state for the task operations to meet (ids 1-5): completed ones, one
# that fails, and one that runs for the whole test (the service runs one at a time, so
# the tasks the test creates stay pending until the end).
stask tasks create demo noop >/dev/null
stask tasks create product import --data '{"file": "products.csv"}' >/dev/null
stask tasks create demo run --data '{"steps": 2, "step_ms": 10, "fail_at": 1}' --max-attempts 1 >/dev/null
stask tasks create demo noop --priority low >/dev/null
stask tasks create demo run --data '{"steps": 3000, "step_ms": 100}' >/dev/null

if [ "$SEED" = random ]; then
    SEED="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
fi
echo "contract: schemathesis $SCHEMATHESIS_VERSION against $URL (seed $SEED, $EXAMPLES examples per operation)"

# Reads `path` of the service with `auth` ("Bearer ..." or a session cookie) into `out`.
fetch() {
    "$VENV/bin/python" - "$URL$1" "$2" "$3" <<'PY'
import sys, urllib.request
url, out, auth = sys.argv[1:4]
name, value = ("Authorization", auth) if auth.startswith("Bearer ") else ("Cookie", auth)
with urllib.request.urlopen(urllib.request.Request(url, headers={name: value}), timeout=30) as res:
    open(out, "wb").write(res.read())
PY
}

run_schemathesis() {
    local config="$1"
    shift
    (cd "$WORK" && "$ST" --config-file "$HERE/$config" run "$WORK/openapi.json" \
        --url "$URL" \
        --checks all \
        --max-examples "$EXAMPLES" \
        --seed "$SEED" \
        --generation-database none \
        --no-color \
        --workers 2 \
        "$@")
    # (Two workers: while one waits on the service, the other generates; the whole
    # script stays around 30 s on 2 cores with the default examples.)
}

# Destructive operations and the credentials they could take away:
# * DELETE /tokens/{id} revokes any token, the one the test authenticates with
#   included (revoking one's own token is allowed). So it has a run of its own, first,
#   authenticated with a session (a revoked token cannot end a session), against
#   tokens made for it; the token of the main run is made only after it.
# * Everything else runs with an admin API token, which no other operation can take
#   away: removing, demoting or re-passwording users (the last admin stays in any
#   case) and logging out end sessions, never tokens (they are principals of their
#   own, see README "Removing a user"). That run may well remove or demote the user
#   of the first run's session: it is done by then.
# * The main run's failed logins block logins from this address for 15 minutes; the
#   session is made before it.
# * What else it changes (workers deactivated, schedules, settings, tasks deleted or
#   cleaned) is state the operations are meant to change; the tests do not depend on it.
# Nothing is excluded otherwise: every operation is in one of the two runs.
status=0

# --- run 1: revoking tokens, with a session -------------------------------------------
for n in 1 2 3; do
    stask tokens create --role viewer --name "spare-$n" >/dev/null 2>&1
done
SESSION_PASSWORD="contract-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
printf '%s\n' "$SESSION_PASSWORD" | stask users add contract --role admin --password-stdin >/dev/null 2>&1
eval "$("$VENV/bin/python" - "$URL/api/v1/auth/login" "$SESSION_PASSWORD" <<'PY'
import json, sys, urllib.request
url, password = sys.argv[1:3]
req = urllib.request.Request(url, data=json.dumps({"name": "contract", "password": password}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as res:
    csrf = json.load(res)["csrf_token"]
    session = next(c.split(";")[0].split("=", 1)[1] for c in res.headers.get_all("Set-Cookie")
                   if c.startswith("stask_session="))
import shlex
print(f"STASK_CONTRACT_SESSION={shlex.quote(session)}; STASK_CONTRACT_CSRF={shlex.quote(csrf)}")
PY
)"
export STASK_CONTRACT_SESSION STASK_CONTRACT_CSRF
# The description as the service serves it (reading it needs credentials too).
fetch /api/v1/openapi.json "$WORK/openapi.json" "stask_session=$STASK_CONTRACT_SESSION"
run_schemathesis schemathesis-tokens.toml --include-name 'DELETE /api/v1/tokens/{id}' || status=$?

# --- run 2: every other operation, with an admin API token ----------------------------
STASK_CONTRACT_TOKEN="$(stask tokens create --role admin --name contract 2>/dev/null)"
export STASK_CONTRACT_TOKEN
run_schemathesis schemathesis.toml --exclude-name 'DELETE /api/v1/tokens/{id}' || status=$?

if [ "$status" -ne 0 ]; then
    echo "--- stask serve log ---" >&2
    tail -n 100 "$WORK/serve.log" >&2
fi
exit "$status"
