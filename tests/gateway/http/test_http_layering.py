"""Layering: the HTTP stage does not reach back into the runtime that starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_http_stage_loads_no_runtime_module() -> None:
    probe = (
        "import sys, pkgutil, importlib, gateway.http, gateway.http.filters\n"
        "for pkg in (gateway.http, gateway.http.filters):\n"
        "    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('gateway.runtime'))))\n"
    )
    env = {**os.environ, "PORTWAY_PURE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
