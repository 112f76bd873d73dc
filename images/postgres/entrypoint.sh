#!/bin/bash
# Start PostgreSQL on $PGDATA, initialising it on the first start: the superuser POSTGRES_USER (default
# postgres) with POSTGRES_PASSWORD (required; from a Secret), the database POSTGRES_DB (default: the user's
# name), password (scram-sha-256) logins over TCP from anywhere, trust only on the local socket in /tmp.
# Extra arguments go to the server (e.g. -c max_connections=200).
set -euo pipefail
: "${PGDATA:?PGDATA is not set}"
user=${POSTGRES_USER:-postgres}
database=${POSTGRES_DB:-$user}

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required to initialise $PGDATA}"
    echo "postgres-entrypoint: initialising $PGDATA (user $user, database $database)" >&2
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [[ "$database" != postgres ]]; then
        echo "CREATE DATABASE \"$database\";" | postgres --single -D "$PGDATA" -c jit=off postgres >/dev/null
    fi
fi
# jit=off: the image leaves out LLVM (images/postgres/Dockerfile).
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp -c jit=off "$@"
