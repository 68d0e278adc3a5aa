#!/usr/bin/env bash
# The Celery example, end to end against a real RabbitMQ at 127.0.0.1:5672: `courier up` publishes capture
# events as Celery task messages, a plain `celery worker` runs them and writes one receipt line per capture. Then
# every outbox row is marked unpublished again and courier restarted, so the worker receives every task a second
# time (what a crash between the broker's confirm and courier's bookkeeping does); it must not write a second
# receipt. Needs target/debug/courier (cargo build --bin courier). The venv is examples/celery_worker/.venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
courier="$root/target/debug/courier"
captures=${CAPTURES:-5}

if ! timeout 2 bash -c '>/dev/tcp/127.0.0.1/5672' 2>/dev/null; then
  if [[ "${CI:-}" == "true" ]]; then echo "FAILED: RabbitMQ does not answer at 127.0.0.1:5672" >&2; exit 1; fi
  echo "SKIPPED: the Celery example needs RabbitMQ at 127.0.0.1:5672"; exit 0
fi
source "$root/scripts/python-venv.sh"
python_venv "$here"

work="$(mktemp -d)"
queue="courier-example-$$"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/courier.toml" <<TOML
[outbox]
broker = "rabbitmq"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
required = true
celery_queue = "$queue"

[outbox.celery]
captured = "courier.tasks.authorization_captured"
TOML

start_courier() {
  "$courier" up --config "$work/courier.toml" --listen 127.0.0.1:0 --admin-listen off --data-dir "$work/data" \
    --log warn > "$work/courier.out" 2> "$work/courier.err" &
  pids+=($!)
  for _ in $(seq 300); do
    server=$(sed -n 's/^courier: listening on //p' "$work/courier.out")
    [[ -n "$server" ]] && break
    sleep 0.1
  done
  [[ -n "$server" ]] || { cat "$work/courier.err" >&2; echo "courier did not start" >&2; exit 1; }
}
cli() { "$courier" "$@" --server "http://$server" --data-dir "$work/data" --json; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }

start_courier
user=$(cli users create --name Ada --email "ada-$$@example.com" | field "['id']")
account=$(cli accounts open --owner "$user" --currency USD | field "['id']")
cli accounts credit "$account" --amount 100000 --currency USD > /dev/null
for i in $(seq "$captures"); do
  authorization=$(cli authorize --account "$account" --merchant m_1 --amount $((100 * i)) --currency USD | field "['id']")
  cli capture "$authorization" > /dev/null
done

export RECEIPTS_FILE="$work/receipts.txt" CELERY_QUEUE="$queue"
(cd "$here" && exec .venv/bin/celery -A tasks worker -Q "$queue" --pool solo --concurrency 1 --loglevel INFO \
  > "$work/worker.log" 2>&1) &
pids+=($!)

wait_receipts() {
  for _ in $(seq 600); do
    [[ -f "$RECEIPTS_FILE" && $(wc -l < "$RECEIPTS_FILE") -ge $1 ]] && return 0
    sleep 0.1
  done
  cat "$work/worker.log" >&2; echo "only $(wc -l < "$RECEIPTS_FILE" 2>/dev/null || echo 0) of $1 receipts" >&2
  exit 1
}
wait_receipts "$captures"

# Redelivery: every event published again with its old ids.
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
python3 - "$work/data/courier.db" <<'PY'
import sqlite3, sys
with sqlite3.connect(sys.argv[1]) as db:
    db.execute("UPDATE outbox SET published_at_us = NULL")
PY
start_courier
# Republished (no pending outbox row), then consumed (the queue empty), then the receipts must not have moved.
python3 - "$work/data/courier.db" <<'PY'
import sqlite3, sys, time
for _ in range(600):
    with sqlite3.connect(sys.argv[1]) as db:
        if db.execute("SELECT COUNT(*) FROM outbox WHERE published_at_us IS NULL").fetchone()[0] == 0:
            break
    time.sleep(0.1)
else:
    sys.exit("courier did not republish the outbox")
PY
"$here/.venv/bin/python" - "$queue" <<'PY'
import sys, time
from kombu import Connection
with Connection("amqp://guest:guest@127.0.0.1:5672//") as conn:
    channel = conn.channel()
    for _ in range(600):
        _, messages, _ = channel.queue_declare(queue=sys.argv[1], passive=True)
        if messages == 0:
            break
        time.sleep(0.1)
    else:
        sys.exit("the redelivered tasks were never consumed")
PY
for _ in $(seq 100); do
  duplicates=$(grep -c "'duplicate'" "$work/worker.log" || true)
  [[ "$duplicates" -ge "$captures" ]] && break
  sleep 0.1
done
[[ "$duplicates" -ge "$captures" ]] || { cat "$work/worker.log" >&2; echo "FAILED: no redelivery seen" >&2; exit 1; }
lines=$(wc -l < "$RECEIPTS_FILE")
distinct=$(cut -d' ' -f2 "$RECEIPTS_FILE" | sort -u | wc -l)
if [[ "$lines" -ne "$captures" || "$distinct" -ne "$captures" ]]; then
  cat "$RECEIPTS_FILE" >&2; echo "FAILED: $lines receipts for $captures captures" >&2; exit 1
fi
"$courier" ledger check --data-dir "$work/data"
echo "celery example: $captures captures, $captures receipts, each once; $duplicates redelivered tasks recognised as duplicates"
