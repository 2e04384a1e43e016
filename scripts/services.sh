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

# pgvector, for the PostgreSQL path of document libraries: built from third_party/pgvector
# when the running server lacks the extension (root installs its build headers with apt).
if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    sql() { psql -h 127.0.0.1 -U postgres -d test -tAc "$1" 2>/dev/null; }
    if [ "$(sql "select 1 from pg_available_extensions where name = 'vector'")" != "1" ]; then
        major=$(sql "show server_version_num" | cut -c1-2)
        config=/usr/lib/postgresql/$major/bin/pg_config
        has_headers() { [ -x "$config" ] && [ -f "$("$config" --includedir-server 2>/dev/null)/postgres.h" ]; }
        if ! has_headers && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "==> installing postgresql-server-dev-$major (to build pgvector)"
            apt-get install -y -q "postgresql-server-dev-$major" >/dev/null 2>&1 \
                || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "postgresql-server-dev-$major" >/dev/null 2>&1; }
        fi
        root=$(cd "$(dirname "$0")/.." && pwd)/third_party/pgvector
        if has_headers; then
            echo "==> building pgvector into PostgreSQL $major"
            { make -s -C "$root" PG_CONFIG="$config" OPTFLAGS="" -j2 && make -s -C "$root" PG_CONFIG="$config" \
                OPTFLAGS="" install; } >/dev/null 2>&1 || echo "==> pgvector did not build: its tests will fail or skip"
            make -s -C "$root" PG_CONFIG="$config" clean >/dev/null 2>&1
        else
            echo "==> pgvector cannot be built here (no pg_config for PostgreSQL $major): its tests will skip"
        fi
    fi
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
