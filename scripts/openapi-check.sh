#!/usr/bin/env bash
# docs/openapi.json, the OpenAPI 3.1 document of the REST routes (docs/rest.md):
#  1. fails when the committed copy is not what proto/ generates now
#     (`COURIER_WRITE_OPENAPI=1 cargo test -p courier --test openapi` rewrites it);
#  2. fails when it is not a valid OpenAPI 3.1 document (openapi-spec-validator);
#  3. exercises every operation with schemathesis against a fresh `courier up`, as served at /openapi.json:
#     no 5xx, and every response matching its schema. GET /v1/events is left out: it is a live feed that runs
#     until the caller's deadline.
# The Python tools come from PyPI into tools/openapi/.venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo test --locked -p courier --test openapi
source "$root/scripts/python-venv.sh"
python_venv "$root/tools/openapi"
bin="$(dirname "$py")"
"$bin/openapi-spec-validator" docs/openapi.json

cargo build --locked --bin courier
work="$(mktemp -d)"
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
mkfifo "$work/stdout"
target/debug/courier up --listen 127.0.0.1:0 --admin-listen off --log warn --data-dir "$work/data" \
  >"$work/stdout" 2>"$work/stderr" &
server=$!
# The first line says where it listens, once its stores are open and its port is bound.
exec 3<"$work/stdout"
addr=""
while IFS= read -r -t 60 line <&3; do
  if [[ "$line" == "courier: listening on "* ]]; then
    addr="${line#courier: listening on }"
    break
  fi
done
if [[ -z "$addr" ]]; then
  echo "openapi-check: courier up did not start" >&2
  cat "$work/stderr" >&2
  exit 1
fi
# Keep draining its stdout so it never blocks on a full pipe.
cat <&3 >/dev/null &
"$bin/schemathesis" run "http://$addr/openapi.json" --url "http://$addr" \
  -H "Authorization: Bearer $(cat "$work/data/token")" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path /v1/events --max-examples 30 --seed 1 --no-color
