# Sourced by scripts/run and scripts/test: make .venv and install the locked, hash-checked dependency set
# (requirements-dev.lock, from scripts/lock) and then copbot itself, when either file has changed since the last
# install. Needs only Python 3.11+. Leaves the caller in the directory it
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
want=$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "copbot: installing dependencies into .venv (first run only)..." >&2
  # Every dependency comes pinned and hash-checked from the lock; copbot itself is installed without resolving
  # anything more (--no-deps), so what runs is exactly what the lock says.
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --require-hashes --no-deps \
           -r requirements-dev.lock &&
         .venv/bin/python -m pip install --disable-pip-version-check --no-deps -e .; } > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "copbot: dependency install failed (log above, also in .venv/install.log)." >&2
    echo "copbot: if pyproject.toml's dependencies changed, refresh the lock files with: scripts/lock" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
cd "$caller"
