#!/usr/bin/env bash
# The test command: formatting, lints, every Rust test (PostgreSQL included), the Python grpcio interop test and
# buf lint. CI runs exactly this (.ci/run). Each step says what it is; the first failure stops the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# A one-shot CI build gains nothing from incremental compilation, whose cache is the largest thing in target/.
if [[ "${CI:-}" == "true" ]]; then
  export CARGO_INCREMENTAL=0
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (SQLite and PostgreSQL; CI=true makes an unreachable PostgreSQL a failure)"
cargo test --workspace --locked

step "buf lint (STANDARD)"
bash scripts/buf.sh lint

step "Python grpcio interop test against the Rust server"
cargo build --locked --bin courier
bash interop/python/run.sh
