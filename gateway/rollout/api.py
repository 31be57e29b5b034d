"""The admin API's rollout endpoints, and the JSON view they (and the dashboard) read.

    GET  /rollouts                         every rollout of the active config
    GET  /rollouts/<name>                  one rollout (`route/rule`, or a route's only one)
    POST /rollouts/<name>/pause|resume|promote|abort

A command answers the rollout as it is after the command (200), 404 for an
unknown rollout, 409 when its phase refuses the command, 503 when the
registry holding the rollout state cannot be reached. The view of a rollout:

    {"name": "shop/0", "route": "shop", "rule": "0",
     "canary": "api-v2", "stable": [{"backend": "api", "weight": 1}],
     "phase": "progressing", "step": 1, "steps": [{"percent": 10, "pause_s": 30}, ...],
     "weight": 50.0, "weights": {"api-v2": 50.0, "api": 50.0}, "applied_weight": 50.0,
     "since": 1767225600.0, "reason": "step 2 of 3: 50% to the canary",
     "limits": {"max_error_rate": 1.0, "max_p99_s": 0.25, "min_requests": 10,
                "rollback_on_failure": true},
     "window": {"started_at": ..., "requests": 812, "errors": 2, "error_rate": 0.25,
                "p99_s": 0.012} or null}

`weight` is the stored status's canary share; `applied_weight` the share in
the routing table this process serves (they differ for a moment after a
change); `window` is the step's measurements so far, known only to the
replica that drives (`driving`, `driver` at the top level).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from aiohttp import web

from gateway.rollout.machine import Command, CommandRefused, RolloutStatus, Window
from gateway.rollout.runner import RolloutRunner, UnknownRollout
from gateway.rollout.targets import RolloutTarget
from portway.registry.base import RegistryError


def split_weights(target: RolloutTarget, canary_percent: float) -> dict[str, float]:
    """Percent of the rule's traffic per backend: the canary's, the rest by stable weight."""
    out: dict[str, float] = {}
    total = sum(w for _, w in target.stable)
    for backend, weight in target.stable:
        share = (100.0 - canary_percent) * weight / total if total else 0.0
        out[backend] = out.get(backend, 0.0) + share
    out[target.canary] = out.get(target.canary, 0.0) + canary_percent
    return out


def _window(window: Window | None) -> dict[str, Any] | None:
    if window is None:
        return None
    p99 = window.p99_s
    return {
        "started_at": window.started_at,
        "requests": window.requests,
        "errors": window.errors,
        "error_rate": round(window.error_rate, 3),
        "p99_s": None if p99 is None else (p99 if math.isfinite(p99) else "+Inf"),
    }


def rollout_view(
    runner: RolloutRunner, target: RolloutTarget, status: RolloutStatus | None = None
) -> dict[str, Any]:
    status = status or runner.status(target)
    spec = target.spec
    applied = runner.applied_weights().get(target.name)
    return {
        "name": target.name,
        "route": target.route,
        "rule": target.name.partition("/")[2],
        "canary": target.canary,
        "stable": [{"backend": b, "weight": w} for b, w in target.stable],
        "phase": status.phase.value,
        "step": status.step,
        "steps": [{"percent": s.percent, "pause_s": s.hold_s} for s in spec.steps],
        "weight": status.weight,
        "weights": split_weights(target, status.weight),
        "applied_weight": applied,
        "since": status.since,
        "reason": status.reason,
        "limits": {
            "max_error_rate": spec.max_error_rate,
            "max_p99_s": spec.max_p99_s,
            "min_requests": spec.min_requests,
            "rollback_on_failure": spec.rollback_on_failure,
        },
        "window": _window(runner.windows.get(target.name)),
    }


def rollouts_view(runner: RolloutRunner) -> dict[str, Any]:
    """The whole `GET /rollouts` answer."""
    registry = runner.registry
    return {
        "identity": runner.identity,
        "driving": runner.driving,
        "driver": runner.driver,
        "registry": {
            "backend": registry.backend if registry is not None else None,
            "up": runner.up,
            "error": runner.error,
        },
        "rollouts": [rollout_view(runner, t) for t in runner.targets()],
    }


class RolloutSource(Protocol):
    """What the handlers read, at request time: the admin process's runner."""

    rollouts: RolloutRunner


class RolloutApi:
    """aiohttp handlers over the admin source's rollout runner."""

    def __init__(self, source: RolloutSource) -> None:
        self.source = source

    @property
    def runner(self) -> RolloutRunner:
        return self.source.rollouts

    def add_routes(self, app: web.Application) -> None:
        actions = "|".join(c.value for c in Command)
        app.router.add_get("/rollouts", self.list)
        app.router.add_post(r"/rollouts/{name:.+}/{action:" + actions + "}", self.command)
        app.router.add_get("/rollouts/{name:.+}", self.one)

    async def list(self, request: web.Request) -> web.Response:
        if request.query:
            return _no_parameters(request)
        return web.json_response(rollouts_view(self.runner))

    async def one(self, request: web.Request) -> web.Response:
        if request.query:
            return _no_parameters(request)
        try:
            target = self.runner.find(request.match_info["name"])
        except UnknownRollout as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(rollout_view(self.runner, target))

    async def command(self, request: web.Request) -> web.Response:
        if request.query:
            return _no_parameters(request)
        cmd = Command(request.match_info["action"])
        try:
            target, status = await self.runner.command(request.match_info["name"], cmd)
        except UnknownRollout as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except CommandRefused as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except RegistryError as exc:
            return web.json_response({"error": f"rollout state: {exc}"}, status=503)
        return web.json_response(rollout_view(self.runner, target, status))


def _no_parameters(request: web.Request) -> web.Response:
    names = ", ".join(sorted(request.query))
    return web.json_response(
        {"error": f"{request.path} takes no parameters (got: {names})"}, status=400
    )
