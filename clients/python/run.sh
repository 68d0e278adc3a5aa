#!/usr/bin/env bash
# The Python SDK's checks (scripts/test.sh runs this): in clients/python/.venv, install the package the way a
# user does (`pip install ./clients/python`), check that the committed stubs match proto/, run mypy --strict
# over the package, its tests and its examples, then pytest against the real `courier up` (sync, async, the
# retry policy, and examples/quickstart.py as its own process).
#
# Usage (from any directory):   bash clients/python/run.sh
#   COURIER_BIN   server binary to test; default target/debug/courier under the repo root. Build it first
#                 (cargo build -p courier --bin courier).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

bin="${COURIER_BIN:-$root/target/debug/courier}"
if [[ "$bin" != */* ]] && command -v "$bin" >/dev/null 2>&1; then
  bin="$(command -v "$bin")"
fi
if [[ ! -f "$bin" || ! -x "$bin" ]]; then
  echo "run.sh: courier server binary not found or not executable: $bin" >&2
  echo "run.sh: build it with 'cargo build -p courier --bin courier', or set COURIER_BIN to its path" >&2
  exit 1
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

source "$root/scripts/python-venv.sh"
python_venv "$here"
# The google.rpc stubs for mypy. --no-deps: they require grpc-stubs, an older copy of the grpc types that would
# overwrite types-grpcio's files in the same grpc-stubs/ directory.
"$py" -m pip install --quiet --disable-pip-version-check --no-deps googleapis-common-protos-stubs==2.3.1

# Installed afresh each run, as a user would, so that the tests run against the wheel (its py.typed, its
# committed stubs, its declared dependencies), not against the source tree.
"$py" -m pip uninstall --quiet --yes courier-client >/dev/null 2>&1 || true
"$py" -m pip install --quiet --disable-pip-version-check "$here"

echo "run.sh: the committed stubs against proto/"
PY="$py" bash "$here/generate.sh" --check

cd "$here"
echo "run.sh: mypy --strict (the package's sources; then the tests and examples against the installed package)"
"$py" -m mypy --strict --no-incremental src/courier_client
"$py" -m mypy --strict --no-incremental examples tests

echo "run.sh: pytest against $bin"
COURIER_BIN="$bin" "$py" -m pytest -q -p no:cacheprovider tests
