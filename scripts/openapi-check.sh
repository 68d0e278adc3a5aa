#!/usr/bin/env bash
# docs/openapi.json, the OpenAPI 3.1 document of the REST routes (docs/rest.md): fails when the committed copy is
# not what proto/ generates now (`COURIER_WRITE_OPENAPI=1 cargo test -p courier --test openapi` rewrites it), and
# when it is not a valid OpenAPI 3.1 document (openapi-spec-validator from PyPI, in tools/openapi/.venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo test --locked -p courier --test openapi
source "$root/scripts/python-venv.sh"
python_venv "$root/tools/openapi"
"$(dirname "$py")/openapi-spec-validator" docs/openapi.json
