"""What a gateway process is started with, and the signals it answers.

Both kinds of gateway process share these: a worker serving traffic
(`gateway.runtime.server`) and the supervisor of several workers
(`gateway.runtime.supervisor`). SIGHUP reloads the config (and the
certificates); SIGTERM and SIGINT drain, then exit.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Command-line knobs of `portway gateway`."""

    config_path: str
    workers: int = 1
    drain_timeout_s: float = 30.0
    admin_port: int | None = None
    control_fd: int | None = None
    """A worker's end of its supervisor's control channel (`gateway.runtime.control`)."""
    rate_limit_fd: int | None = None
    """A worker's descriptor of the supervisor's shared rate limit table
    (`http.filters.shared_buckets`), mapped before the first table is compiled."""
    worker_index: int = 0
    """Which of the supervisor's workers this is (its count in that table)."""
    health_fd: int | None = None
    """A worker's descriptor of the supervisor's shared health verdicts
    (`upstream.shared_verdicts`): worker 0 probes, the others follow."""


def install_signals(on_stop: Callable[[], None], on_reload: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `on_stop`, SIGHUP `on_reload`, on the running loop."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_stop)
    loop.add_signal_handler(signal.SIGINT, on_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
