"""The rollouts' Prometheus metrics, read from the runner at scrape time.

`portway_rollout_weight{rollout,backend}`: percent of the rule's traffic each
backend gets under the stored status (the canary's weight, the rest shared by
the stable backends' weights); `portway_rollout_state{rollout,state}`: 1 for
the rollout's phase, 0 for the others (a Prometheus state set);
`portway_rollout_driver`: 1 while this gateway process drives the rollouts.
Registered once per process, on the default registry that the admin API's
`/metrics` appends, by the process that serves the admin API.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.rollout.api import split_weights
from gateway.rollout.machine import Phase
from gateway.rollout.runner import RolloutRunner


class RolloutCollector(Collector):
    """Collects from the runner last `install`ed (a process has one admin runner)."""

    _installed: weakref.WeakKeyDictionary[CollectorRegistry, RolloutCollector] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self._runner: weakref.ref[RolloutRunner] | None = None

    @classmethod
    def install(cls, runner: RolloutRunner, registry: CollectorRegistry = REGISTRY) -> None:
        collector = cls._installed.get(registry)
        if collector is None:
            collector = cls._installed[registry] = cls()
            registry.register(collector)
        collector._runner = weakref.ref(runner)

    def collect(self) -> Iterator[Metric]:
        runner = self._runner() if self._runner is not None else None
        weight = GaugeMetricFamily(
            "portway_rollout_weight",
            "Percent of a rollout rule's traffic each backend gets (canary and stable).",
            labels=["rollout", "backend"],
        )
        state = GaugeMetricFamily(
            "portway_rollout_state",
            "1 for the phase a rollout is in, 0 for the others.",
            labels=["rollout", "state"],
        )
        driver = GaugeMetricFamily(
            "portway_rollout_driver", "1 while this gateway process drives the rollouts."
        )
        if runner is not None:
            for target in runner.targets():
                status = runner.status(target)
                for backend, share in sorted(split_weights(target, status.weight).items()):
                    weight.add_metric([target.name, backend], share)
                for phase in Phase:
                    state.add_metric([target.name, phase.value], float(phase is status.phase))
            driver.add_metric([], float(runner.driving))
        yield weight
        yield state
        yield driver
