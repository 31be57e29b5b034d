#!/usr/bin/env bash
# Install portway into .venv and run the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
exec .venv/bin/portway demo "$@"
