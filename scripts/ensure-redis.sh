#!/usr/bin/env bash
# The Redis tier's tests start their own redis-server (tests/conftest_redis.py): install
# Debian's package when it is missing. CI runs as root; elsewhere sudo is tried.
set -euo pipefail
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    exit 0
fi
run() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v apt-get >/dev/null; then
    echo "redis-server is missing and there is no apt-get: install Redis or Valkey" >&2
    exit 1
fi
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends redis-server
# The package starts a system-wide server on 6379; the tests use their own ports.
command -v redis-server >/dev/null
