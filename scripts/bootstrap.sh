# Sourced by scripts/run and scripts/test: make .venv and install the project into it when
# pyproject.toml has changed since the last install. Needs only Python 3.11+. Leaves the caller in the directory it
# was called from (scripts/run reads `.env` and keeps `copbot.db` there); `$root` is the checkout.
set -euo pipefail
caller=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "copbot needs Python 3.11 or newer")'
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.copbot-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "copbot: installing dependencies into .venv (first run only)..." >&2
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[dev]" > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "copbot: dependency install failed (log above, also in .venv/install.log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
cd "$caller"
