#!/usr/bin/env bash
# Regenerates the committed stubs of the contract under src/courier/ from proto/courier/ (run it after changing a
# .proto and commit the result), or with --check makes them in a temporary directory and fails if the committed
# copy differs (run.sh, so CI, does this). Needs the python given as $PY (run.sh's venv: grpcio-tools and
# mypy-protobuf from requirements.txt); nothing from the system, no protoc.
#
# Only courier/ is generated: google.rpc (and google.api, for the HTTP annotations) come at run time from the
# googleapis-common-protos package, which a generated google/ package would shadow (as interop/python/run.sh
# explains). To compile, imports resolve from proto/ first (the vendored google/rpc), then from the .proto files
# googleapis-common-protos installs (google/api/*.proto), then grpc_tools' own (google/protobuf/*.proto).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${PY:-$here/.venv/bin/python}"
check=false
[[ "${1:-}" == "--check" ]] && check=true

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
googleapis="$("$py" -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')"
bin="$(dirname "$py")"

cd "$root/proto"
mapfile -t protos < <(find courier -name '*.proto' | sort)
# grpcio-tools writes _pb2.py and _pb2_grpc.py, mypy-protobuf's plugins the .pyi of both: its stubs pass
# `mypy --strict` and type the grpc.aio stubs too (grpcio-tools' own --pyi_out does neither, and has no
# _pb2_grpc.pyi at all). The plugins' "Writing mypy to ..." lines go to /dev/null.
"$py" -m grpc_tools.protoc -I . -I "$googleapis" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}" 2>/dev/null || {
  # Again with the plugins' stderr, which then says what failed.
  "$py" -m grpc_tools.protoc -I . -I "$googleapis" \
    --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
    --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" "${protos[@]}"
  exit 1
}
if [[ -e "$out/google" ]]; then
  echo "generate.sh: a google/ package was generated; it would shadow googleapis-common-protos" >&2
  exit 1
fi
# Regular packages (an __init__.py at each level) so that mypy and setuptools-free wheels see them; py.typed
# because the .pyi files are the package's types.
find "$out/courier" -type d -exec touch {}/__init__.py \;
touch "$out/courier/py.typed"

if $check; then
  if ! diff -r "$here/src/courier" "$out/courier" >/dev/null; then
    diff -r "$here/src/courier" "$out/courier" | head -40 >&2 || true
    echo "generate.sh: the committed stubs in clients/python/src/courier are stale: run clients/python/generate.sh" >&2
    exit 1
  fi
  echo "generate.sh: the committed stubs are up to date"
else
  rm -rf "$here/src/courier"
  cp -r "$out/courier" "$here/src/courier"
  echo "generate.sh: wrote $here/src/courier"
fi
