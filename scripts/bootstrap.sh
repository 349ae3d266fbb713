# Sourced by the other scripts: a project venv with the package and its test extras.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi

# The short soak (tests/soak) and the benchmark smoke test (tests/bench) drive
# load with wrk against nginx; CI machines start without either.
if [ -n "${CI:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
  && { ! command -v wrk >/dev/null || [ ! -x /usr/sbin/nginx ]; }; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light) >/dev/null
fi

npm_install() { # npm_install DIR: install a Node project from its lockfile
  if ! command -v npm >/dev/null; then
    echo "npm is required for $1 (install Node.js 20+)" >&2
    return 1
  fi
  if [ ! -d "$1/node_modules" ] || [ "$1/package-lock.json" -nt "$1/node_modules" ]; then
    (cd "$1" && npm ci --no-audit --no-fund --loglevel=error && touch node_modules)
  fi
}

build_example_bundle() {
  npm_install example_app
  (cd example_app && npm run --silent build >/dev/null)
}

install_e2e_tools() { # Node packages of tests/e2e, and Debian's chromium for the browser test
  npm_install tests/e2e
  npm_install tests/providers/browser
  (cd tests/providers/browser && npm run --silent build >/dev/null)
  # The shared rate-limit test starts its own redis-server on a free port.
  if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing redis-server (apt) for the shared rate-limit test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  # The metrics tests check the alert rules with promtool and scrape a gunicorn app with a real prometheus.
  if { ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; } \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing prometheus (apt) for the metrics tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  npm_install tests/openai_compat/browser
  if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (apt) for the browser test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}
