#!/usr/bin/env bash
# Server CPU time per call: starts `BIN up` (SQLite in a temp dir, risk on without velocity rules), warms it up,
# then runs `BIN bench ARGS...` for 8 s and divides the server's CPU time (user + system, from /proc) by the calls
# answered. Less sensitive to a noisy shared machine than calls/s: compare two binaries side by side with it.
#
#   bash bench/cpu_per_call.sh target/release/courier --scenario authorize --accounts 1000
set -euo pipefail
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; shift
work="$(mktemp -d)"
server=""
cleanup() { [[ -n "$server" ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
printf '[rollout]\nactive = "bench"\n[[rule_set]]\nversion = "bench"\n' > "$work/rules.toml"
COURIER_RISK__RULES_FILE="$work/rules.toml" "$bin" up --listen 127.0.0.1:0 --admin-listen off \
  --data-dir "$work/data" --log warn > "$work/up.log" 2>&1 &
server=$!
for _ in $(seq 300); do grep -q 'listening on' "$work/up.log" 2>/dev/null && break; sleep 0.1; done
addr="$(grep -o 'listening on [^ ]*' "$work/up.log" | cut -d' ' -f3)"
[[ -n "$addr" ]] || { echo "cpu_per_call.sh: the server did not start:" >&2; cat "$work/up.log" >&2; exit 1; }
token=()
[[ -f "$work/data/token" ]] && token=(--token "$(cat "$work/data/token")")
"$bin" bench --server "http://$addr" "${token[@]}" "$@" --duration 2s --warmup 1s --json > /dev/null
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before="$(ticks)"
report="$("$bin" bench --server "http://$addr" "${token[@]}" "$@" --duration 8s --warmup 0s --json)"
after="$(ticks)"
hz="$(getconf CLK_TCK)"
python3 - "$report" "$before" "$after" "$hz" <<'PY'
import json, sys
report, before, after, hz = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cpu_us = (after - before) * 1e6 / hz
print(f"{report['scenario']}: {report['ok']} calls answered, server CPU {cpu_us / 1e6:.2f} s, "
      f"{cpu_us / max(report['ok'], 1):.0f} µs per call, p99 {report['p99_us'] / 1000:.2f} ms")
PY
