# Sourced by the Python test scripts: `python_venv DIR` makes DIR/.venv with DIR/requirements.txt installed and
# sets $py to its python. It reinstalls only when requirements.txt (or the venv's Python) changed, so that reruns
# start in a second instead of re-resolving every package.
python_venv() {
  local dir="$1" venv="$1/.venv" stamp want
  py="$venv/bin/python"
  if [[ ! -x "$py" ]]; then
    echo "python-venv: creating $venv"
    python3 -m venv "$venv"
  fi
  stamp="$venv/.requirements.sha256"
  want="$( { cat "$dir/requirements.txt"; "$py" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "python-venv: installing $dir/requirements.txt into $venv"
    "$py" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
    echo "$want" >"$stamp"
  fi
}
