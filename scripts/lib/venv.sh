# Sourced by scripts/run and scripts/test: make sure .venv exists and holds the project as
# installed from its own files (setup.cfg), re-installing only when those files or the checkout's
# place changed. MAGSYNC_VENV names another virtualenv; MAGSYNC_SKIP_INSTALL=1 uses it as it is
# (the tests run scripts/run from a copy of the checkout with the virtualenv already built).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${MAGSYNC_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "magsync: creating virtualenv in $VENV" >&2
    "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.magsync-installed"
want="$( (cat "$ROOT/setup.cfg" "$ROOT/setup.py"; echo "$ROOT") | sha256sum | cut -d' ' -f1)"
if [ "${MAGSYNC_SKIP_INSTALL:-}" != "1" ] && { [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; }; then
    echo "magsync: installing the project with its sandbox, test and development extras" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev,sandbox]"
    echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
