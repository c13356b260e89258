#!/usr/bin/env bash
# Runs Tandem and ShareDB 7 side by side under the same loads with
# `tandem bench`, and writes the results table into BENCHMARKS.md.
#
#   ./scripts/bench.sh               # every scenario, 10 s each
#   DURATION=5s ./scripts/bench.sh   # shorter
#   ONLY=tandem ./scripts/bench.sh   # one server
#   BASELINE=abc123 ./scripts/bench.sh   # the regression check against another commit
#   ONLY=regression ./scripts/bench.sh   # the regression check alone
#
# The regression check runs the loads where a regression once hid (200
# authors × 5/s in one document; 1,000 documents × 4 × 1/s) on this build
# and on a build of BASELINE (by default the commit that made the table in
# BENCHMARKS.md), interleaved in one run, both with their defaults, and
# writes them side by side; it warns when this build's median ack p50 or
# p99 is more than 1.5× the baseline's and every run of it is slower than
# every run of the baseline.
#
# Each server runs alone on CPU 0 and the load generator on CPU 1
# (taskset), each scenario on a freshly started server (Tandem: Badger in a
# new directory, at each --durability level: fsync, os, memory; ShareDB:
# in memory). Tandem's per-connection
# rate limit is lifted (--client-rate 1e6): closed-loop clients type as
# fast as acks come. Needs Go, Node and npm; installs ShareDB from npm into
# scripts/sharedb/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${DURATION:-10s}
only=${ONLY:-}
out=${OUT:-bench-results}
mkdir -p "$out"
rm -f "$out"/*.json

go build -o "$out/tandem" ./cmd/tandem
tandem=$(cd "$out" && pwd)/tandem
baseline=${BASELINE:-$(sed -n 's/.*at commit `\([0-9a-f]*\)`.*/\1/p' BENCHMARKS.md | head -1)}
baseline=${baseline:-7681553}
if [ -z "$only" ] || [ "$only" = regression ]; then
  rm -rf "$out/baseline-src"
  git worktree add --detach --force "$out/baseline-src" "$baseline" >/dev/null
  (cd "$out/baseline-src" && go build -o "$(cd .. && pwd)/tandem-baseline" ./cmd/tandem)
  git worktree remove --force "$out/baseline-src"
fi
if [ -z "$only" ] || [ "$only" = sharedb ]; then
  (cd scripts/sharedb && npm ci --no-audit --no-fund --silent)
fi

server_cpu="taskset -c 0"
bench_cpu="taskset -c 1"
if ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; then
  echo "no taskset or fewer than 2 CPUs: server and load share the CPUs" >&2
  server_cpu="" bench_cpu=""
fi

pid=""
stop_server() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
trap stop_server EXIT

# start_tandem [BINARY [FLAGS...]]: the build under test with the lifted
# rate limit, or another build with its defaults.
start_tandem() {
  rm -rf "$out/data"
  local bin=${1:-$tandem}
  if [ $# -eq 0 ]; then set -- "$tandem" --client-rate 1e6; fi
  shift
  $server_cpu "$bin" serve --addr 127.0.0.1:18080 --data-dir "$out/data" "$@" \
    --log-level warn 2>"$out/tandem-server.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null 2>&1 && return; sleep 0.1; done
  echo "tandem did not start" >&2; cat "$out/tandem-server.log" >&2; exit 1
}

start_sharedb() {
  $server_cpu node scripts/sharedb/server.mjs 18090 >"$out/sharedb-server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$out/sharedb-server.log" 2>/dev/null && return; sleep 0.1; done
  echo "sharedb did not start" >&2; cat "$out/sharedb-server.log" >&2; exit 1
}

# scenario NAME ARGS...: one run on each server: Tandem at each
# durability level (fsync, the default; os; memory, like ShareDB's), and
# ShareDB.
scenario() {
  local name=$1; shift
  for server in tandem tandem_os tandem_memory sharedb; do
    local proto=${server%%_*}
    [ -n "$only" ] && [ "$only" != "$proto" ] && continue
    case " $* " in *" --mode idle "*) [ "$server" != tandem ] && continue ;; esac
    case $server in
      tandem) start_tandem ;;
      tandem_os) start_tandem "$tandem" --client-rate 1e6 --durability os ;;
      tandem_memory) start_tandem "$tandem" --client-rate 1e6 --durability memory ;;
      sharedb) start_sharedb ;;
    esac
    url=http://127.0.0.1:18080
    [ "$proto" = sharedb ] && url=ws://127.0.0.1:18090
    echo "== $server: $name" >&2
    if $bench_cpu "$tandem" bench --protocol "$proto" --server "$url" --pid "$pid" --json --quiet "$@" >"$out/$server-$name.json"; then :; else
      echo "   (the run failed or did not converge: see $out/$server-$name.json)" >&2
    fi
    stop_server
  done
}

# compare NAME ARGS...: the regression check, on the baseline and this
# build in turn, three times, each with its defaults.
compare() {
  local name=$1; shift
  { [ -z "$only" ] || [ "$only" = regression ]; } || return 0
  for round in 1 2 3; do
    for build in baseline head; do
      if [ $build = baseline ]; then start_tandem "$out/tandem-baseline"; else start_tandem "$tandem"; fi
      echo "== regression check, $build: $name ($round)" >&2
      $bench_cpu "$tandem" bench --server http://127.0.0.1:18080 --pid "$pid" --json --quiet "$@" \
        >"$out/regression-$build-$name-$round.json" || echo "   (the run failed: see $out/regression-$build-$name-$round.json)" >&2
      stop_server
    done
  done
}

compare open-200x5 --mode open --clients 200 --rate 5 --duration "$duration"
compare docs-1000x4 --mode open --docs 1000 --clients 4 --rate 1 --duration "$duration"

[ "$only" = regression ] && only=none
scenario closed-2      --mode closed --clients 2 --duration "$duration"
scenario closed-10     --mode closed --clients 10 --duration "$duration"
scenario closed-50     --mode closed --clients 50 --duration "$duration"
scenario open-200x5    --mode open --clients 200 --rate 5 --duration "$duration"
scenario open-500x1    --mode open --clients 500 --rate 1 --duration "$duration"
scenario open-1000x1   --mode open --clients 1000 --rate 1 --duration "$duration"
scenario docs-1000x4   --mode open --docs 1000 --clients 4 --rate 1 --duration "$duration"
scenario docs-1000x4-presence --mode open --docs 1000 --clients 4 --rate 1 --presence --duration "$duration"
scenario docs-5000x2   --mode open --docs 5000 --clients 2 --rate 0.5 --duration "$duration"
scenario join-2000     --mode idle --clients 2000 --duration 2s
scenario idle-10000    --mode idle --docs 1000 --clients 10 --duration 5s

node scripts/bench-report.mjs "$out" BENCHMARKS.md "$baseline" "$(git rev-parse --short HEAD)"
echo "results in $out/, table in BENCHMARKS.md" >&2
