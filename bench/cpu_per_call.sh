#!/usr/bin/env bash
# Server CPU time per call: starts `BIN up` (SQLite in a temp dir, risk on without velocity rules), then runs
# `BIN bench ARGS...` for 8 s after 2 s of warm-up and divides the server's CPU time over those 8 s (user +
# system, from /proc) by the calls answered. Less sensitive to a noisy shared machine than calls/s: compare two binaries side by side with it.
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
# The server's CPU time is read over the measured window only (`--server-pid`): set-up calls and warm-up are left
# out.
report="$("$bin" bench --server "http://$addr" "${token[@]}" "$@" --duration 8s --warmup 2s --json --server-pid "$server")"
python3 - "$report" <<'PY'
import json, sys
report = json.loads(sys.argv[1])
print(f"{report['scenario']} ({report['transport']}): {report['ok']} calls answered, server CPU "
      f"{report['server_cpu_us'] / 1e6:.2f} s, {report['server_cpu_per_call_us']:.0f} µs per call, "
      f"p99 {report['p99_us'] / 1000:.2f} ms")
PY
