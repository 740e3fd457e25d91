#!/usr/bin/env bash
# Create or reuse .venv/ in the repository root with hw_prune and its pinned dependencies.
# torch==2.13.0 must be installed first: it is the only spec that resolves to the local CPU wheel.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp=".venv/.hw_prune-setup"
want="$(cat requirements.lock requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] reusing .venv (pins unchanged)" >&2
  exit 0
fi
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "hw_prune needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Some machines list local package indexes that may not exist; pip warns once per package about them.
quiet() { "$@" 2> >(grep -v "^WARNING: Location '" >&2); }
echo "[setup] installing torch==2.13.0 (CPU) ..." >&2
quiet "${pip[@]}" install torch==2.13.0
echo "[setup] installing pinned dependencies (requirements.lock) ..." >&2
quiet "${pip[@]}" install -r requirements.lock
# finn-plus declares brevitas==0.13.0 and would downgrade the pins: install it without deps
# (its other requirements are in requirements.lock, see DESIGN.md section 4).
quiet "${pip[@]}" install --no-deps -r requirements-nodeps.txt
quiet "${pip[@]}" install --no-deps -e .
echo "$want" > "$stamp"
echo "[setup] done: $(.venv/bin/hw_prune --version)" >&2
