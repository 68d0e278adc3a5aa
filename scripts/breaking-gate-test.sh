#!/usr/bin/env bash
# Tests the breaking-change gate itself (`bash scripts/buf.sh breaking --against baseline.binpb`): each case copies
# proto/ (baseline.binpb and buf.yaml included) into a temporary directory, makes one change there and runs buf
# breaking against the committed baseline. Renumbering a field, reusing a field's number, removing a field and
# renaming an enum value or an RPC must each fail with buf's message naming the field or value; the unmodified copy and a
# removal that reserves the number and the name (the "deprecate then reserve" step of docs/contract.md) must pass.
# buf comes from scripts/buf.sh's pinned install; if it cannot be installed this script fails, CI or not.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
buf="$root/tools/buf/node_modules/.bin/buf"
bash "$root/scripts/buf.sh" --version >/dev/null # installs the pinned buf if it is missing
if [[ ! -x "$buf" ]]; then
  echo "breaking-gate-test: FAIL: $buf is missing after scripts/buf.sh" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
users=courier/users/v1/users.proto

# copy NAME: a fresh copy of proto/ in $work/NAME; prints its path.
copy() {
  local dir="$work/$1"
  mkdir -p "$dir"
  cp -R "$root/proto/." "$dir/"
  echo "$dir"
}

# edit DIR FILE PYTHON-EXPR: rewrites DIR/FILE with the expression over `s` and fails if nothing changed, so a case
# whose target left the protos cannot pass by testing nothing.
edit() {
  python3 - "$1/$2" "$3" <<'EOF'
import sys
path, expr = sys.argv[1], sys.argv[2]
s = open(path).read()
new = eval(expr, {"s": s})
if new == s:
    sys.exit(f"breaking-gate-test: the edit {expr!r} changed nothing in {path}; update the case")
open(path, "w").write(new)
EOF
}

# must_pass NAME DIR
must_pass() {
  local out
  if out="$(cd "$2" && "$buf" breaking --against baseline.binpb 2>&1)"; then
    echo "ok: $1: buf breaking passes"
  else
    echo "FAIL: $1: buf breaking should pass, it said:"
    echo "$out" | sed 's/^/    /'
    failures=$((failures + 1))
  fi
}

# must_fail NAME DIR EXPECTED...: buf breaking must exit non-zero and print every EXPECTED line (fixed strings).
must_fail() {
  local name="$1" dir="$2" out rc=0 expected
  shift 2
  out="$(cd "$dir" && "$buf" breaking --against baseline.binpb 2>&1)" || rc=$?
  if [[ $rc -eq 0 ]]; then
    echo "FAIL: $name: buf breaking passed; the gate lets this change through"
    failures=$((failures + 1))
    return
  fi
  for expected in "$@"; do
    if ! grep -qF -- "$expected" <<<"$out"; then
      echo "FAIL: $name: buf breaking failed (exit $rc) without saying: $expected"
      echo "$out" | sed 's/^/    /'
      failures=$((failures + 1))
      return
    fi
  done
  echo "ok: $name: buf breaking fails (exit $rc):"
  echo "$out" | sed 's/^/    /'
}

dir="$(copy unmodified)"
must_pass "unmodified copy" "$dir"

dir="$(copy renumbered)"
edit "$dir" "$users" 's.replace("  string email = 3;\n", "  string email = 7;\n")'
must_fail "field renumbered (User.email 3 -> 7)" "$dir" \
  'Previously present field "3" with name "email" on message "User" was deleted without reserving the number "3".'

dir="$(copy number-reused)"
edit "$dir" "$users" 's.replace("  string name = 2;\n", "  string name = 3;\n", 1).replace("  string email = 3;\n", "  string email = 2;\n", 1)'
must_fail "field numbers swapped (User.name 2 <-> User.email 3)" "$dir" \
  'Field "2" with name "email" on message "User" changed option "json_name" from "name" to "email".' \
  'Field "2" on message "User" changed name from "name" to "email".'

dir="$(copy removed)"
edit "$dir" "$users" 's.replace("  // Email as given at creation; unique regardless of case.\n  string email = 3;\n", "")'
must_fail "field removed (User.email)" "$dir" \
  'Previously present field "3" with name "email" on message "User" was deleted without reserving the number "3".' \
  'Previously present field "3" with name "email" on message "User" was deleted without reserving the name "email".'

dir="$(copy enum-value-renamed)"
edit "$dir" "$users" 's.replace("USER_STATUS_SUSPENDED = 2;", "USER_STATUS_PAUSED = 2;")'
must_fail "enum value renamed (USER_STATUS_SUSPENDED -> USER_STATUS_PAUSED)" "$dir" \
  'Enum value "2" on enum "UserStatus" changed name from "USER_STATUS_SUSPENDED" to "USER_STATUS_PAUSED".'

dir="$(copy rpc-renamed)"
edit "$dir" "$users" 's.replace("  rpc GetUser(", "  rpc FetchUser(", 1)'
must_fail "RPC renamed (UserService.GetUser -> FetchUser)" "$dir" \
  'Previously present RPC "GetUser" on service "UserService" was deleted.'

dir="$(copy removed-and-reserved)"
edit "$dir" "$users" 's.replace("  // Email as given at creation; unique regardless of case.\n  string email = 3;\n", "  reserved 3;\n  reserved \"email\";\n")'
must_pass "field removed with its number and name reserved" "$dir"

if [[ $failures -ne 0 ]]; then
  echo "breaking-gate-test: $failures case(s) failed" >&2
  exit 1
fi
echo "breaking-gate-test: all cases behave"
