#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 for user `postgres`
# without a password (trust), as on the development and CI machines: installs it
# (Debian/Ubuntu packages) where it is missing and starts the cluster where it is
# stopped. Idempotent; prints what it did.
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if command -v pg_isready >/dev/null && ready; then
    exit 0
fi

if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "postgres.sh: PostgreSQL is not installed; installing it (apt-get)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    version=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # Local test machines only: the suite connects as `postgres` without a password.
    $sudo sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
fi

version=$(ls /etc/postgresql | sort -V | tail -1)
echo "postgres.sh: starting PostgreSQL $version" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true

for _ in $(seq 1 50); do
    ready && exit 0
    sleep 0.2
done
echo "postgres.sh: PostgreSQL does not answer on 127.0.0.1:5432; see /var/log/postgresql/" >&2
exit 1
