#!/usr/bin/env bash
# Runs buf on proto/, installing the pinned version from the npm registry into tools/buf/node_modules first.
# Usage: bash scripts/buf.sh lint                                (what the test command runs)
#        bash scripts/buf.sh breaking --against baseline.binpb   (the breaking-change gate, also in the test command)
#        bash scripts/buf.sh baseline                            (when a release is cut: rewrite proto/baseline.binpb,
#                                                                 the release contract the gate compares against)
#        bash scripts/buf.sh <any buf args>                      (e.g. format -d, build)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/tools/buf"
buf="$tools/node_modules/.bin/buf"
if [[ ! -x "$buf" ]]; then
  echo "buf.sh: installing @bufbuild/buf into tools/buf" >&2
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
cd "$root/proto"
if [[ "${1:-}" == "baseline" ]]; then
  exec "$buf" build -o baseline.binpb
fi
exec "$buf" "$@"
