#!/usr/bin/env bash
# Authorize on PostgreSQL, both sides of the wire: starts `BIN up` on a fresh database of the local PostgreSQL
# (risk on without velocity rules), runs `BIN bench --scenario authorize` for 10 s after 2 s of warm-up, and prints
# calls/s, courier's CPU per call (from /proc, over the measured window), PostgreSQL's CPU per call (every process
# of the postgres user, over 8 s inside that window) and the ledger writer's batches (size and time, from
# /metrics). Compare two binaries side by side with it, alternating: on this path the database's CPU and the
# writer's round trips matter as much as courier's own CPU.
#
#   bash bench/postgres.sh target/release/courier [postgres://postgres@127.0.0.1:5432]
set -euo pipefail
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
server_url="${2:-postgres://postgres@127.0.0.1:5432}"
work="$(mktemp -d)" database="courier_pgbench_$$" server=""
cleanup() {
  [[ -n "$server" ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql "$server_url/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql "$server_url/postgres" -qc "CREATE DATABASE $database" >/dev/null
printf '[rollout]\nactive = "bench"\n[[rule_set]]\nversion = "bench"\n' > "$work/rules.toml"
COURIER_RISK__RULES_FILE="$work/rules.toml" "$bin" up --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --data-dir "$work/data" --database-url "$server_url/$database" --log warn > "$work/up.log" 2>&1 &
server=$!
for _ in $(seq 300); do grep -q 'listening on' "$work/up.log" 2>/dev/null && break; sleep 0.1; done
addr="$(grep -o 'listening on [^ ]*' "$work/up.log" | cut -d' ' -f3)"
admin="$(grep -o 'admin on [^ ]*' "$work/up.log" | cut -d' ' -f3)"
[[ -n "$addr" ]] || { echo "postgres.sh: the server did not start:" >&2; cat "$work/up.log" >&2; exit 1; }
token=()
[[ -f "$work/data/token" ]] && token=(--token "$(cat "$work/data/token")")

# CPU ticks (user + system) of every process the postgres user runs: the backends serving courier among them.
postgres_ticks() {
  local total=0 pid stat
  for pid in $(pgrep -u postgres); do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
    read -r -a fields <<<"${stat##*) }"
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}
( sleep 3; before="$(postgres_ticks)"; sleep 8; echo "$before $(postgres_ticks)" > "$work/postgres-ticks" ) &
sampler=$!
"$bin" bench --server "http://$addr" "${token[@]}" --scenario authorize --accounts 1000 --duration 10s \
  --warmup 2s --json --server-pid "$server" > "$work/report.json"
wait "$sampler"
curl -s "http://$admin/metrics" > "$work/metrics.txt"
python3 - "$work" "$(getconf CLK_TCK)" <<'PY'
import json, re, sys
work, tick_hz = sys.argv[1], int(sys.argv[2])
report = json.load(open(f"{work}/report.json"))
before, after = map(int, open(f"{work}/postgres-ticks").read().split())
rate = report["throughput"]
postgres_us = (after - before) / tick_hz / 8 / rate * 1e6
metrics = {m[0]: float(m[1]) for m in re.findall(r"^(courier_ledger_\w+?(?:_sum|_count)) (\S+)$",
                                                 open(f"{work}/metrics.txt").read(), re.M)}
batches = metrics.get("courier_ledger_batch_size_count", 0) or 1
print(f"authorize on PostgreSQL: {rate:,.0f} calls/s, courier CPU {report['server_cpu_per_call_us']:.0f} µs per call, "
      f"PostgreSQL CPU {postgres_us:.0f} µs per call, p99 {report['p99_us'] / 1000:.2f} ms; writer batches: "
      f"{metrics.get('courier_ledger_batch_size_sum', 0) / batches:.1f} operations, "
      f"{metrics.get('courier_ledger_commit_seconds_sum', 0) / batches * 1000:.2f} ms each")
PY
