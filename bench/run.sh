#!/usr/bin/env bash
# Side-by-side baseline: the same `courier bench` load, on this machine, against
#   1. the transport ceiling: a bare tonic server answering from memory (crates/courier-bench/src/bin/ceiling.rs),
#   2. a Python grpcio implementation of the same contract (bench/python: ThreadPoolExecutor, sqlite3, a separate
#      Python risk service called over gRPC per Authorize),
#   3. courier itself, full stack: `courier up` (release) on SQLite in a temp dir, risk on, without velocity rules,
#      development auth on (every call carries a bearer JWT that courier verifies).
# Authorize on all three, GetUser on the ceiling and courier; for courier also the same calls as REST/JSON on the
# same port, p99 at half its maximum throughput (open loop), AuthorizeStream on one stream, resident memory with
# many idle client connections held open, and Authorize on PostgreSQL when one answers. Every run reads its
# server's CPU time over the measured window from /proc (`courier bench --server-pid`). bench/report.py prints
# the figures, their ratios to the ceiling and to Python, and each target of docs/benchmarks.md, met or not.
#
# Needs cargo, Python 3.11 and pip (no system protoc: grpcio-tools brings its own).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: bash bench/run.sh [--duration 10s] [--warmup 2s] [--concurrency 64] [--connections 4] [--accounts 1000]
                         [--idle 1000] [--workers 10] [--out DIR] [--postgres URL] [--big-store] [--quick]

  --duration      measured time per run (default 10s)
  --warmup        unmeasured time before each run (default 2s)
  --concurrency   concurrent callers, and messages in flight on the AuthorizeStream run (default 64)
  --connections   HTTP/2 connections per run (default 4)
  --accounts      accounts the authorize scenario spreads over (default 1000)
  --idle          idle connections held open for the memory figure (default 1000)
  --workers       ThreadPoolExecutor max_workers of the Python servers (default 10, as in the grpcio examples)
  --out DIR       where JSON reports, the SVG plot and logs go (default target/bench-results)
  --postgres URL  PostgreSQL server (no database name) for the PostgreSQL row; a database is created and dropped
                  (default postgres://postgres@127.0.0.1:5432; "" leaves the row out)
  --big-store     also Authorize against a store holding 1M accounts and 10M authorizations, seeded once by
                  bench/seed.py into target/bench-store (about 7 minutes and 9 GB) and copied for the run
  --quick         smoke run: 2s runs, 1s warm-up, 100 idle connections
USAGE
}

duration=10s warmup=2s concurrency=64 connections=4 accounts=1000 idle=1000 workers=10 out=""
postgres="postgres://postgres@127.0.0.1:5432" big_store=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --accounts) accounts="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --postgres) postgres="$2"; shift 2 ;;
    --big-store) big_store=1; shift ;;
    --quick) duration=2s warmup=1s idle=100; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${out:-$root/target/bench-results}"
postgres_hostport="${postgres#*://}"; postgres_hostport="${postgres_hostport#*@}"; postgres_hostport="${postgres_hostport%%/*}"
postgres_host="${postgres_hostport%%:*}" postgres_port="${postgres_hostport##*:}"
[[ "$postgres_port" == "$postgres_host" ]] && postgres_port=5432
mkdir -p "$out"
out="$(cd "$out" && pwd)"
work="$(mktemp -d)"

# Every process started here is recorded and killed on any exit (success, error, Ctrl-C).
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "run.sh: $*" >&2; }

# wait_for_line FILE PREFIX PID: prints what follows PREFIX on the first line of FILE that starts with it,
# once PID has printed it; fails if PID exits first or 60 s pass.
wait_for_line() {
  local file="$1" prefix="$2" pid="$3" line
  for _ in $(seq 600); do
    line="$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)"
    if [[ -n "$line" ]]; then
      echo "${line#"$prefix"}"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      log "process $pid exited before printing '$prefix'; its output:"
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  log "timed out waiting for '$prefix' in $file"
  return 1
}

# start NAME COMMAND...: runs COMMAND in the background, output to $work/NAME.log; sets $started_pid.
start() {
  local name="$1"
  shift
  "$@" >"$work/$name.log" 2>&1 &
  started_pid=$!
  pids+=("$started_pid")
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# -- Build ----------------------------------------------------------------------------------------------------
log "building courier and the ceiling fixture (release)"
(cd "$root" && cargo build --release --quiet -p courier -p courier-bench --bins)
courier="$root/target/release/courier"
ceiling="$root/target/release/ceiling"

venv="$here/python/.venv"
py="$venv/bin/python"
if [[ ! -x "$py" ]]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
want="$( { cat "$here/python/requirements.txt"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log "installing bench/python/requirements.txt into $venv"
  "$py" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
  echo "$want" >"$stamp"
fi
# Stubs regenerated every run from proto/courier (google/rpc comes from googleapis-common-protos at run time).
gen="$here/python/generated"
rm -rf "$gen"
mkdir -p "$gen"
mapfile -t protos < <(cd "$root/proto" && find courier -name '*.proto' | sort)
(cd "$root" && "$py" -m grpc_tools.protoc -I proto --python_out="$gen" --grpc_python_out="$gen" "${protos[@]}")

bench() { # bench NAME URL ARGS...: one `courier bench` run, JSON report to $out/NAME.json
  local name="$1" url="$2"
  shift 2
  log "bench $name: $*"
  # A data dir with no token: the baselines check none, so only courier's runs (--data-dir) send one.
  COURIER_DATA_DIR="$work/no-token" "$courier" bench --server "$url" --duration "$duration" --warmup "$warmup" --connections "$connections" \
    --json "$@" >"$out/$name.json"
}
authorize=(--scenario authorize --accounts "$accounts" --concurrency "$concurrency")
get_user=(--scenario get-user --concurrency "$concurrency")

# -- 1. Transport ceiling -------------------------------------------------------------------------------------
start ceiling "$ceiling"
ceiling_pid="$started_pid"
addr="$(wait_for_line "$work/ceiling.log" "ceiling: listening on " "$ceiling_pid")"
bench ceiling-authorize "http://$addr" "${authorize[@]}" --server-pid "$ceiling_pid"
bench ceiling-get-user "http://$addr" "${get_user[@]}" --server-pid "$ceiling_pid"
stop "$ceiling_pid"

# -- 2. Python grpcio baseline --------------------------------------------------------------------------------
export PYTHONPATH="$gen"
start py-risk "$py" "$here/python/risk_server.py" --workers "$workers"
risk_pid="$started_pid"
risk_addr="$(wait_for_line "$work/py-risk.log" "risk: listening on " "$risk_pid")"
start py-server "$py" "$here/python/server.py" --db "$work/python.db" --risk "$risk_addr" --workers "$workers"
py_pid="$started_pid"
addr="$(wait_for_line "$work/py-server.log" "server: listening on " "$py_pid")"
# Its server CPU is both processes': courier's figure includes its risk service too.
bench python-authorize "http://$addr" "${authorize[@]}" --server-pid "$py_pid" --server-pid "$risk_pid"
stop "$py_pid"
stop "$risk_pid"
unset PYTHONPATH

# -- 3. courier, full stack -----------------------------------------------------------------------------------
# The built-in rules deny more than 20 authorizations per minute per account (velocity): a load test is exactly
# that, so this rule set has no rules; risk is still called on every Authorize.
rules="$work/rules.toml"
printf '[rollout]\nactive = "bench"\n\n[[rule_set]]\nversion = "bench"\n' >"$rules"
# start_courier NAME ARGS...: `courier up` with a data dir $work/NAME; sets $courier_pid and $url.
start_courier() {
  local name="$1"
  shift
  mkdir -p "$work/$name"
  start "$name" env COURIER_RISK__RULES_FILE="$rules" "$courier" up --listen 127.0.0.1:0 --admin-listen off \
    --data-dir "$work/$name" --log warn "$@"
  courier_pid="$started_pid"
  url="http://$(wait_for_line "$work/$name.log" "courier: listening on " "$courier_pid")"
}
start_courier courier-data
# `courier up` checks tokens (development auth): bench sends the one it wrote to its data dir, so every call of
# the full stack includes token verification and the per-method scope check.
auth=(--data-dir "$work/courier-data" --server-pid "$courier_pid")
bench courier-authorize "$url" "${authorize[@]}" "${auth[@]}" --plot "$out/courier-authorize.svg"
bench courier-get-user "$url" "${get_user[@]}" "${auth[@]}"
# The same calls as REST/JSON on the same port (HTTP/1.1 keep-alive, one connection per caller).
bench courier-authorize-rest "$url" "${authorize[@]}" "${auth[@]}" --transport rest
bench courier-get-user-rest "$url" "${get_user[@]}" "${auth[@]}" --transport rest
half="$("$py" -c 'import json,sys; print(max(1, round(json.load(open(sys.argv[1]))["throughput"] / 2)))' "$out/courier-authorize.json")"
bench courier-half "$url" "${authorize[@]}" "${auth[@]}" --rate "$half"
bench courier-stream "$url" --scenario authorize-stream --streams 1 --accounts "$accounts" --concurrency "$concurrency" \
  "${auth[@]}"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
rss_before="$(rss "$courier_pid")"
"$courier" bench --server "$url" --scenario idle-connections --connections "$idle" --duration 3s --json \
  --data-dir "$work/courier-data" >"$out/courier-idle.json" 2>"$work/idle.log" &
idle_pid=$!
pids+=("$idle_pid")
wait_for_line "$work/idle.log" "courier bench: holding " "$idle_pid" >/dev/null
rss_idle="$(rss "$courier_pid")"
wait "$idle_pid"
stop "$courier_pid"
echo "$rss_before $rss_idle $idle" >"$out/courier-rss.txt"

# -- 4. courier on PostgreSQL (when one answers) --------------------------------------------------------------
rm -f "$out/courier-postgres.json"
if [[ -n "$postgres" ]] && command -v psql >/dev/null && timeout 2 bash -c ">/dev/tcp/${postgres_host}/${postgres_port}" 2>/dev/null; then
  database="courier_bench_$$"
  psql "$postgres/postgres" -qc "CREATE DATABASE $database" >/dev/null
  start_courier courier-pg --database-url "$postgres/$database"
  bench courier-postgres "$url" "${authorize[@]}" --data-dir "$work/courier-pg" --server-pid "$courier_pid"
  stop "$courier_pid"
  psql "$postgres/postgres" -qc "DROP DATABASE $database" >/dev/null
else
  log "PostgreSQL at ${postgres:-(none)} does not answer: its row is left out"
fi

# -- 5. courier on a large store (--big-store) -----------------------------------------------------------------
rm -f "$out/courier-big.json" "$out/courier-big-startup.txt"
if [[ "$big_store" == 1 ]]; then
  pristine="$root/target/bench-store"
  if [[ ! -f "$pristine/courier.db" ]]; then
    rm -rf "$pristine"
    mkdir -p "$pristine"
    # One start creates the tables (migrations); the seed fills them.
    start seed-up "$courier" up --listen 127.0.0.1:0 --admin-listen off --data-dir "$pristine" --log warn
    wait_for_line "$work/seed-up.log" "courier: listening on " "$started_pid" >/dev/null
    stop "$started_pid"
    "$py" "$here/seed.py" --db "$pristine/courier.db" >&2
  fi
  mkdir -p "$work/courier-big"
  log "copying the seeded store ($(du -h "$pristine/courier.db" | cut -f1))"
  cp "$pristine/courier.db" "$work/courier-big/"
  started_at="$(date +%s.%N)"
  start_courier courier-big
  echo "$started_at $(date +%s.%N)" >"$out/courier-big-startup.txt"
  bench courier-big "$url" "${authorize[@]}" --data-dir "$work/courier-big" --server-pid "$courier_pid"
  stop "$courier_pid"
  log "courier ledger check on the large store: $("$courier" ledger check --data-dir "$work/courier-big" 2>&1 | tail -1)"
  rm -rf "$work/courier-big"
fi

# -- Report ---------------------------------------------------------------------------------------------------
"$py" "$here/report.py" "$out"
cpu="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo
echo "Machine: $(nproc) CPUs ($cpu), $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM;" \
  "load generator and servers share it. Runs: $duration measured after $warmup warm-up, $concurrency callers" \
  "on $connections connections, authorize over $accounts accounts; Python servers with max_workers=$workers."
echo "JSON reports and the courier latency plot: $out"
