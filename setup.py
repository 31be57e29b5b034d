"""Build portway, compiling the HTTP hot path with mypyc.

Everything is declared in pyproject.toml; this file only adds the compiled
modules. The request path (client parser callbacks → routing → upstream
write → response relay) is plain, typed Python; mypyc turns the modules in
`gateway.compiled.HOT_PATH` into C extensions with native classes, which
halves the proxy's own CPU per request (`benchmarks/proxy_cost.py`). The
Python sources stay the truth: with `PORTWAY_PURE=1` at install time, or
where the build fails (no C compiler: the extensions are optional), nothing
is compiled and the same code runs interpreted (`gateway/compiled.py` also
refuses compiled modules older than their sources).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
COMPILED = runpy.run_path(str(ROOT / "gateway" / "compiled.py"))


def hot_path_extensions() -> list[object]:
    if os.environ.get("PORTWAY_PURE", "") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    COMPILED["write_record"](ROOT / "gateway")
    for name in COMPILED["stray_extensions"](ROOT / "gateway"):  # an earlier in-place build's
        for ext in COMPILED["source_path"](ROOT / "gateway", name).parent.glob(
            name.rpartition(".")[2] + ".*.so"
        ):
            ext.unlink()

    # No config file: the project's [tool.mypy] loads the pydantic plugin, which
    # the isolated build environment does not have (imports outside the compiled
    # set are typed Any there, which is all mypyc needs of them). For the same
    # reason the modules the compiled set imports are read silently: without
    # pydantic their config classes take no arguments, which is not an error
    # of the code compiled (mypy --strict checks them with the plugin).
    extensions: list[object] = mypycify(
        [
            "--config-file",
            "",
            "--ignore-missing-imports",
            "--follow-imports",
            "silent",
            *(str(COMPILED["source_path"](Path("gateway"), name)) for name in COMPILED["HOT_PATH"]),
        ],
        opt_level="3",
        group_name="gateway_hot_path",
        debug_level="0",
    )
    for extension in extensions:  # no C compiler: install anyway, run interpreted
        extension.optional = True  # type: ignore[attr-defined]
    return extensions


def native_lane() -> list[object]:
    """The native socket lane (`gateway/http/native/`, one module from its C files): plain
    C against the Python headers, optional like the hot path (without it the event loop
    serves every socket)."""
    from setuptools import Extension

    return [
        Extension(
            "gateway.http.native_lane",
            [
                "gateway/http/native/lane.c",
                "gateway/http/native/buffer.c",
                "gateway/http/native/heads.c",
                "gateway/http/native/transport.c",
                "gateway/http/native/relay.c",
            ],
            depends=["gateway/http/native/lane.h"],
            # one program to the optimiser (the files call each other per request)
            extra_compile_args=["-O2", "-Wall", "-flto"],
            extra_link_args=["-flto"],
            optional=True,
        )
    ]


setup(ext_modules=[*hot_path_extensions(), *native_lane()])
