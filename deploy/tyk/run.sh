#!/usr/bin/env bash
# The Tyk plugin test: gateway_test.py plays a Tyk gateway against `courier serve tyk-plugin`.
#
# Usage: bash deploy/tyk/run.sh   (COURIER_BIN: the binary to test; default target/debug/courier, build it first)
#
# Creates deploy/tyk/.venv on first use (again only when requirements.txt changes), generates the Python stubs of
# the vendored Tyk protos (third_party/tyk) into deploy/tyk/generated, then runs the test.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${COURIER_BIN:-$root/target/debug/courier}"
if [[ ! -x "$bin" ]]; then
  echo "run.sh: courier binary not found or not executable: $bin (cargo build --bin courier)" >&2
  exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

source "$root/scripts/python-venv.sh"
python_venv "$here"

# Regenerated every run, so the stubs never lag behind the vendored files. Tyk's files import each other by bare
# name, so their directory is the include root.
gen="$here/generated"
rm -rf "$gen" && mkdir -p "$gen"
protos="$root/third_party/tyk/coprocess/proto"
"$py" -m grpc_tools.protoc -I "$protos" --python_out="$gen" --grpc_python_out="$gen" "$protos"/*.proto

COURIER_BIN="$bin" exec "$py" "$here/gateway_test.py"
