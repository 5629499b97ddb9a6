#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1; start local ones if installed but stopped.
set -u
fail() { echo "make test: $*" >&2; exit 1; }

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
    || fail "PostgreSQL is not reachable on 127.0.0.1:5432 and no local cluster could be started (install postgresql)"
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 \
    || fail "Redis is not reachable on 127.0.0.1:6379 and redis-server is not installed (install redis-server)"
fi
echo "services: PostgreSQL and Redis are up"
