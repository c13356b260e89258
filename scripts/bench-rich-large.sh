#!/usr/bin/env bash
# A 1 MB formatted document with 10 editors (5/s each) beside 100 small
# plain documents × 2 editors × 2/s, against the small documents alone, on
# one server at `--durability fsync` (BENCHMARKS.md, "Rich text"): the small
# documents' p99 beside the large one should stay within 1.5× of alone.
# Two runs of each, interleaved; the server on CPU 0, the load on CPU 1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-results/rich-large}
mkdir -p "$out"
bin="$out/tandem"
go build -o "$bin" ./cmd/tandem
server_cpu="taskset -c 0" bench_cpu="taskset -c 1"
if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then server_cpu="" bench_cpu=""; fi
port=18082
url=http://127.0.0.1:$port
# The large document: paragraphs with headings, bold and links, about 1 MB.
python3 - >"$out/large.json" <<'PY'
import json
ops, size, i = [], 0, 0
while size < 1 << 20:
    i += 1
    if i % 12 == 1:
        ops += [{"insert": "Section %d" % i}, {"insert": "\n", "attributes": {"header": 2}}]
    words = "The committee met on Tuesday to review the plan for the next quarter and agreed on "
    ops += [{"insert": words}, {"insert": "three priorities", "attributes": {"bold": True}},
            {"insert": ", listed in the "}, {"insert": "roadmap", "attributes": {"link": "https://example.com/r"}},
            {"insert": " (item %d).\n" % i}]
    size += len(words) + 60
print(json.dumps({"title": "Large", "type": "rich", "delta": ops}))
PY
run() { # name
  rm -rf "$out/data"
  $server_cpu "$bin" serve --addr 127.0.0.1:$port --data-dir "$out/data" --client-rate 1e6 --durability fsync --log-level warn 2>"$out/server.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf $url/healthz >/dev/null && break; sleep 0.1; done
  local large_pid=""
  if [ "$1" = beside ]; then
    local id
    id=$(curl -sf -XPOST $url/api/docs -H 'Content-Type: application/json' --data-binary @"$out/large.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    $bench_cpu "$bin" bench --server $url --doc-ids "$id" --type rich --mode open --clients 10 --rate 5 --duration 25s --json --quiet >"$out/large-$rep.json" &
    large_pid=$!
    sleep 3
  fi
  local f="$out/small-$1-$rep.json"
  $bench_cpu "$bin" bench --server $url --pid $pid --docs 100 --clients 2 --mode open --rate 2 --duration 15s --json --quiet >"$f" || true
  [ -n "$large_pid" ] && wait "$large_pid" || true
  kill $pid; wait $pid 2>/dev/null || true
  python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); a=r["submit_to_ack"]
print("%-28s %7.0f ops/s  p50 %6.1f  p99 %6.1f ms  converged %s  errors %s" % (sys.argv[1].split("/")[-1], r["committed_ops_per_sec"], a["p50_ms"], a["p99_ms"], r.get("converged"), r.get("errors")))' "$f"
  if [ "$1" = beside ]; then python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); a=r["submit_to_ack"]
print("  (the large document: %.0f ops/s  p50 %.1f  p99 %.1f ms  converged %s)" % (r["committed_ops_per_sec"], a["p50_ms"], a["p99_ms"], r.get("converged")))' "$out/large-$rep.json"; fi
}
for rep in 1 2; do
  run alone
  run beside
done
