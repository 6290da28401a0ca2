#!/usr/bin/env bash
# Run a command (the test suite) with PostgreSQL when this machine has it:
#   tests/with_postgres.sh .venv/bin/python -m pytest
# Starts the local cluster if it is down and pg_ctlcluster exists, then exports
# REFLOW_TEST_POSTGRES_URL (unless set) when the server answers. Without PostgreSQL the
# command runs anyway and the PostgreSQL tests skip, except under CI=true: there the URL
# is set regardless, so a missing server fails those tests instead of skipping them.
set -euo pipefail

DEFAULT_URL="postgresql://postgres@127.0.0.1:5432/test"

if ! pg_isready -h 127.0.0.1 -q 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ]; then
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        for _ in $(seq 1 20); do  # up to 10 s for the server to accept connections
            pg_isready -h 127.0.0.1 -q 2>/dev/null && break
            sleep 0.5
        done
    fi
fi

if [ -z "${REFLOW_TEST_POSTGRES_URL:-}" ]; then
    if pg_isready -h 127.0.0.1 -q 2>/dev/null || [ "${CI:-}" = "true" ]; then
        export REFLOW_TEST_POSTGRES_URL="$DEFAULT_URL"
    fi
fi

exec "$@"
