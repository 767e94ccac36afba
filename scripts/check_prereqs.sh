#!/usr/bin/env bash
# Checks the two system dependencies Blink cannot install from PyPI, with one message each.
set -u
fail=0
if ! command -v java >/dev/null 2>&1; then
  echo "blink: Java 17 is missing (Spark needs it). Install it: apt-get install -y openjdk-17-jre-headless" >&2
  fail=1
elif ! java -version 2>&1 | grep -qE 'version "(17|21)'; then
  echo "blink: Spark 4 needs Java 17 or 21; found: $(java -version 2>&1 | head -1). Install openjdk-17-jre-headless and set JAVA_HOME." >&2
  fail=1
fi
if [ -z "${REDIS_URL:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  echo "blink: redis-server is missing. Install it (apt-get install -y redis-server) or set REDIS_URL to a Redis 7 server." >&2
  fail=1
fi
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "blink: Python 3.11 is required (python3 is $(python3 --version 2>&1))." >&2
  fail=1
fi
exit $fail
