#!/usr/bin/env bash
# Starts the local PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379) that
# the storage and limit tests use, when they are installed and not running. Where one is
# missing, the tests that need it are skipped with a line saying so (tests/databases.py);
# with ALIZE_REQUIRE_SERVICES=1 (CI) they fail instead.
set -uo pipefail

if command -v pg_isready >/dev/null 2>&1; then
    if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
        cluster=$(ls /etc/postgresql 2>/dev/null | head -1)
        if [ -n "$cluster" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
            echo "==> starting PostgreSQL $cluster"
            pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
            for _ in $(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
        fi
    fi
else
    echo "==> PostgreSQL is not installed: its tests will be skipped"
fi

if command -v redis-server >/dev/null 2>&1; then
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        echo "==> starting Redis"
        dir=${XDG_RUNTIME_DIR:-/tmp}/alize-redis
        mkdir -p "$dir"
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
            --dir "$dir" --logfile "$dir/redis.log" || true
        for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
    fi
else
    echo "==> Redis is not installed: its tests will be skipped"
fi
exit 0
