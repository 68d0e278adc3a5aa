#!/usr/bin/env bash
# Interop test: drive courier's Rust server with the official Python gRPC stack.
#
# Usage (from any directory):   bash interop/python/run.sh
#   COURIER_BIN   server binary to test (a path, or a name on PATH); default
#                 target/debug/courier under the repo root. Build it first.
#
# Creates interop/python/.venv on first use, installs requirements.txt into it
# (again only when that file changes), regenerates the Python stubs for
# proto/courier/ into interop/python/generated/, then runs interop_test.py;
# then runs it again with stubs of the release contract (proto/baseline.binpb)
# in interop/python/generated-baseline/ (wire compatibility).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

# Check the binary first: it is the cheapest thing to get wrong. A COURIER_BIN
# given as a relative path is taken relative to the caller's directory, so it
# is resolved before the cd below.
bin="${COURIER_BIN:-$root/target/debug/courier}"
if [[ "$bin" != */* ]] && command -v "$bin" >/dev/null 2>&1; then
  bin="$(command -v "$bin")" # a bare name found on PATH
fi
if [[ ! -f "$bin" || ! -x "$bin" ]]; then
  echo "run.sh: courier server binary not found or not executable: $bin" >&2
  echo "run.sh: build it with 'cargo build', or set COURIER_BIN to its path" >&2
  exit 1
fi
# Absolute, so the test can start it whatever its own working directory.
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

cd "$root"

source "$root/scripts/python-venv.sh"
python_venv "$here"

# Regenerate every run so the stubs can never lag behind the .proto files.
# `python -m grpc_tools.protoc` adds grpc_tools' bundled include directory
# itself, which is where google/protobuf/{timestamp,any}.proto come from.
#
# Only courier/ is generated. payments.proto imports google/rpc/status.proto,
# which `-I proto` resolves from the copy vendored under proto/google/ for
# compilation; at run time `google.rpc.status_pb2` must come from the
# googleapis-common-protos package (installed with grpcio-status), which
# grpc_status and the error details are built on. A google/ package generated
# here would shadow it, so it is never generated, and checked for below.
gen="$here/generated"
rm -rf "$gen"
mkdir -p "$gen"
mapfile -t protos < <(cd proto && find courier -name '*.proto' | sort)
if [[ ${#protos[@]} -eq 0 ]]; then
  echo "run.sh: no .proto files under $root/proto/courier" >&2
  exit 1
fi
"$py" -m grpc_tools.protoc -I proto \
  --python_out="$gen" --grpc_python_out="$gen" --pyi_out="$gen" \
  "${protos[@]}"
if [[ -e "$gen/google" ]]; then
  echo "run.sh: $gen/google was generated; it would shadow googleapis-common-protos" >&2
  exit 1
fi

COURIER_BIN="$bin" "$py" "$here/interop_test.py"

# Wire compatibility: the same test with stubs generated from the release contract (proto/baseline.binpb, which
# buf breaking also holds the protos to), so clients built from the last release keep working with this server.
old="$here/generated-baseline"
rm -rf "$old"
mkdir -p "$old"
"$py" -m grpc_tools.protoc --descriptor_set_in=proto/baseline.binpb \
  --python_out="$old" --grpc_python_out="$old" --pyi_out="$old" \
  "${protos[@]}"
echo "run.sh: again, with the stubs of the release contract (proto/baseline.binpb)"
COURIER_BIN="$bin" COURIER_STUBS="$old" exec "$py" "$here/interop_test.py"
