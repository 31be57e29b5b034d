"""A drill's children die with it, so a killed drill leaves no process holding its ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from portway.drill.child import dies_with_parent

PARENT = """
import subprocess, sys, time
from portway.drill.child import dies_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=dies_with_parent())
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(dies_with_parent() is None, reason="PR_SET_PDEATHSIG is Linux-only")
def test_the_child_gets_sigterm_when_the_drill_is_killed() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child_pid}/stat") as stat:
            if stat.read().split()[2] == "Z":  # exited, waiting to be reaped by init
                return
        time.sleep(0.05)
    os.kill(child_pid, 9)
    raise AssertionError("the child outlived its killed parent")
