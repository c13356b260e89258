#!/usr/bin/env bash
# Plain beside rich text on one build: 10 and 50 closed-loop clients and
# 200 authors × 5/s on one document, each type on a fresh server, the types
# interleaved, two runs each, at `--durability memory` and `fsync`
# (BENCHMARKS.md, "Rich text"). The server runs on CPU 0 and the load on
# CPU 1 when taskset is there.
#
#   ./scripts/bench-rich.sh                # both levels
#   LEVELS=memory ./scripts/bench-rich.sh  # one
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-results/rich}
mkdir -p "$out"
bin="$out/tandem"
go build -o "$bin" ./cmd/tandem
server_cpu="taskset -c 0" bench_cpu="taskset -c 1"
if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then server_cpu="" bench_cpu=""; fi
port=18081
run() { # level type name args...
  local level=$1 typ=$2 name=$3; shift 3
  rm -rf "$out/data"
  $server_cpu "$bin" serve --addr 127.0.0.1:$port --data-dir "$out/data" --client-rate 1e6 --durability "$level" --log-level warn 2>"$out/server.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.1; done
  local f="$out/$level-$typ-$name-$rep.json"
  $bench_cpu "$bin" bench --server http://127.0.0.1:$port --pid $pid --json --quiet --type "$typ" "$@" >"$f" || true
  kill $pid; wait $pid 2>/dev/null || true
  python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); a=r["submit_to_ack"]
print("%-32s %7.0f ops/s  p50 %6.1f  p99 %6.1f ms  server RSS %5.0f MB  converged %s  errors %s" % (sys.argv[1].split("/")[-1], r["committed_ops_per_sec"], a["p50_ms"], a["p99_ms"], r.get("server_peak_rss_mb") or 0, r.get("converged"), r.get("errors")))' "$f"
}
for level in ${LEVELS:-memory fsync}; do
  for rep in 1 2; do
    for typ in plain rich; do
      run "$level" "$typ" closed10 --clients 10 --duration 10s
      run "$level" "$typ" closed50 --clients 50 --duration 10s
      run "$level" "$typ" open200 --mode open --clients 200 --rate 5 --duration 10s
    done
  done
done
