#!/usr/bin/env bash
# The README's newcomer path, literally, on a fresh clone:
#   npm ci && npm start      ready, then stopped with Ctrl-C and started again: ready within
#                            READY_LIMIT_SECONDS (default 10), no warn/error line in either run
#   the walk-through         the README's marked block, as written, with bash -e
#   the tests                FRESH_CLONE_TEST_CMD (default `npm test`)
# It follows the README's defaults: no DATABASE_URL (the embedded PostgreSQL 18), port 8080, and
# RELAYPLANE_DNS_SERVERS=127.0.0.1:9 as the README suggests for a first try (no DNS query leaves).
#
# Usage: scripts/fresh-clone-check.sh [REF]   (REF: what to clone; default: this checkout's HEAD)
# Env:   READY_LIMIT_SECONDS, FRESH_CLONE_TEST_CMD ("" skips the tests), KEEP_CLONE=1
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ref=${1:-$(git -C "$repo" rev-parse HEAD)}
limit=${READY_LIMIT_SECONDS:-10}
test_cmd=${FRESH_CLONE_TEST_CMD-npm test}

work=$(mktemp -d)
# As root the embedded PostgreSQL runs as user postgres: the folders above its data must be enterable.
chmod 711 "$work"
serve_pid=
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then kill -INT -- "-$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  if [ "${KEEP_CLONE:-}" = 1 ]; then echo "clone kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }
fail() { printf 'fresh-clone-check: %s\n' "$*" >&2; exit 1; }

unset DATABASE_URL RELAYPLANE_DATA_DIR RELAYPLANE_PORT RELAYPLANE_JWT_SECRET RELAYPLANE_MASTER_KEY
export RELAYPLANE_DNS_SERVERS=127.0.0.1:9

if (exec 3<>/dev/tcp/127.0.0.1/8080) 2>/dev/null; then fail "port 8080 is in use: the README's commands need it"; fi

step "clone $ref"
git clone -q "$repo" "$work/relayplane"
git -C "$work/relayplane" checkout -q "$ref"
cd "$work/relayplane"

step "npm ci"
npm ci --no-audit --no-fund 2>&1 | tee "$work/npm-ci.log"
grep 'EBADENGINE' "$work/npm-ci.log" | grep -o "package: '[^']*'" | sort -u | sed 's/^/EBADENGINE warning for /' || true

# Starts `npm start` in a process group of its own (as a shell's foreground job) and waits for its
# ready line (an event, not a clock); ready_ms is how long that took.
start_serve() {
  local log=$1 started
  started=$(date +%s%N)
  setsid npm start >"$log" 2>&1 &
  serve_pid=$!
  until grep -q 'Relayplane is ready on ' "$log"; do
    kill -0 "$serve_pid" 2>/dev/null || { cat "$log"; fail "npm start exited before it was ready"; }
    sleep 0.1
  done
  ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
}
# Ctrl-C, as a terminal sends it: SIGINT to the whole process group.
stop_serve() {
  kill -INT -- "-$serve_pid"
  wait "$serve_pid" || true
  serve_pid=
}
quiet() { ! grep -E '"level":(40|50|60)|(WARN|ERROR|FATAL)' "$1"; }

step "npm start (first start: build, embedded PostgreSQL, migrations)"
start_serve "$work/start-1.log"
first_ms=$ready_ms
echo "ready after ${first_ms} ms"
grep -o 'Relayplane is ready on [^"]*' "$work/start-1.log"

step "the README's walk-through"
awk '/<!-- walk-through:/{f=1;next} f&&/^```sh/{g=1;next} g&&/^```/{exit} g' README.md >"$work/walk-through.sh"
[ -s "$work/walk-through.sh" ] || fail "no walk-through block found in README.md"
bash -e "$work/walk-through.sh"

stop_serve
quiet "$work/start-1.log" || fail "the first run logged a warning or an error (above)"

step "npm start again (nothing changed)"
start_serve "$work/start-2.log"
again_ms=$ready_ms
echo "ready after ${again_ms} ms (limit ${limit} s)"
stop_serve
quiet "$work/start-2.log" || fail "the restart logged a warning or an error (above)"
[ "$again_ms" -le $((limit * 1000)) ] || fail "a restart took ${again_ms} ms, over ${limit} s"

if [ -n "$test_cmd" ]; then
  step "$test_cmd"
  bash -c "$test_cmd"
fi
step "fresh-clone-check passed: first start ${first_ms} ms, restart ${again_ms} ms"
