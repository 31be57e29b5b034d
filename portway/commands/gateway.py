"""`portway gateway --config FILE`: run the edge gateway.

With `--workers 1` the process serves traffic and the admin API itself; with
more, it becomes a supervisor of that many worker processes sharing the
listener ports (SO_REUSEPORT) and serves the admin API with totals
(`gateway.runtime.server`, `gateway.runtime.supervisor`). Logs are JSON lines on stderr.
Exit status: 0 after a clean drain, 1 when the config cannot be loaded at
startup (each issue printed as `file:line:col: path: message`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

HELP = "run the gateway: listeners, hot reload, graceful drain, admin API"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="routing config file")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="worker processes sharing the ports (default: number of CPUs)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds in-flight requests may take to finish on SIGTERM (default 30)",
    )
    parser.add_argument(
        "--admin-port",
        type=int,
        default=None,
        metavar="P",
        help="admin API port (default: the config's admin.port)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="the least severe log records written (default info)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--control-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rate-limit-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--health-fd", type=int, default=None, help=argparse.SUPPRESS)


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run(args: argparse.Namespace) -> int:
    from gateway.config.errors import ConfigError
    from gateway.runtime.process import ServerOptions
    from gateway.runtime.server import run_worker
    from portway.telemetry import setup_logging

    setup_logging(args.log_level.upper())
    if args.workers < 1:
        print("portway gateway: error: --workers must be at least 1", file=sys.stderr)
        return 2
    options = ServerOptions(
        config_path=args.config,
        workers=args.workers,
        drain_timeout_s=args.drain_timeout,
        admin_port=args.admin_port,
        control_fd=args.control_fd,
        rate_limit_fd=args.rate_limit_fd,
        worker_index=args.worker_index,
        health_fd=args.health_fd,
    )
    try:
        with _event_loop_runner() as runner:
            if args.worker or args.workers == 1:
                return runner.run(run_worker(options))
            from gateway.runtime.supervisor import Supervisor

            return runner.run(Supervisor(options).run())
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 1
    except OSError as exc:
        logging.getLogger("portway.gateway").error("cannot start", extra={"error": str(exc)})
        return 1
