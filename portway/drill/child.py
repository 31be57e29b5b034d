"""Child processes of a drill die with it.

The drill starts a gateway and possibly an etcd member. If the drill itself
is killed (SIGKILL from a CI timeout), its `finally` blocks never run, and
orphans would keep holding the drill's ports, so the next run refuses to
start. On Linux each child asks the kernel for SIGTERM when its parent dies
(`prctl(PR_SET_PDEATHSIG)`); elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`, or None where it is not available."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)

    def request_sigterm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return request_sigterm
