#!/usr/bin/env bash
# The browser test (scripts/test.sh runs this; docs/grpc-web.md): Debian's chromium, headless, driven by
# playwright-core, loads a page from one origin that calls a real `courier up` on another over gRPC-Web, with a
# client generated from proto/ by protoc-gen-es v2 and @connectrpc/connect-web's gRPC-Web transport, bundled by
# esbuild: CreateUser, GetUser, ListUsers (a server stream), and a CORS refusal for a page on an origin courier does
# not allow.
#
# Usage (from any directory):   bash clients/web/run.sh
#   COURIER_BIN   server binary to test; default target/debug/courier under the repo root. Build it first
#                 (cargo build -p courier --bin courier).
#   CHROMIUM      the browser; default /usr/bin/chromium. When it is missing and this runs as root, Debian's
#                 `chromium` is installed with apt-get; otherwise the test prints SKIPPED and passes, except
#                 under CI=true, where a browser that cannot be had fails the run.
#
# The npm tools (tools/web, pinned by its package-lock.json) are installed with `npm ci` when missing or when the
# lock file changed; no browser is downloaded. The generated client goes to clients/web/gen/ afresh each run and is
# not committed, so it can never lag behind the .proto files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="$root/tools/web"

# Without a browser there is no test: fail loudly under CI, skip on a laptop.
missing() {
  if [[ "${CI:-}" == "true" ]]; then
    echo "run.sh: FAILED: $1 (CI=true: the browser test must run)" >&2
    exit 1
  fi
  echo "SKIPPED: the browser test: $1"
  exit 0
}

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$chromium" ]] && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
  echo "run.sh: installing Debian's chromium (apt-get install -y chromium)"
  log="$(mktemp)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >"$log" 2>&1; then
    # A fresh machine may not have the package lists yet.
    DEBIAN_FRONTEND=noninteractive apt-get update >>"$log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >>"$log" 2>&1 || tail -20 "$log" >&2
  fi
  rm -f "$log"
fi
[[ -x "$chromium" ]] || missing "no chromium at $chromium (apt-get install chromium, as root; or set CHROMIUM)"
command -v node >/dev/null && command -v npm >/dev/null || missing "node and npm are not installed"

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

# npm ci again only when the lock file changed since the last install.
stamp="$tools/node_modules/.courier-lock-sha256"
lock_sum="$(sha256sum "$tools/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
  echo "run.sh: npm ci in tools/web (protoc-gen-es, connect, connect-web, esbuild, playwright-core)"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$stamp"
fi

echo "run.sh: generating the TypeScript client from proto/ (buf + protoc-gen-es) into clients/web/gen"
rm -rf "$here/gen"
mkdir -p "$here/gen"
PATH="$tools/node_modules/.bin:$PATH" bash "$root/scripts/buf.sh" generate --template "$here/buf.gen.yaml" \
  --output "$here/gen"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "run.sh: chromium ($("$chromium" --version 2>/dev/null | head -1)) against $bin"
COURIER_BIN="$bin" WEB_TOOLS="$tools" CHROMIUM="$chromium" WEB_WORK="$work" \
  node --test --test-reporter=spec "$here/browser.test.mjs"
