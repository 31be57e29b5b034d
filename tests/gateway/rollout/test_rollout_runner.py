"""The rollout runner with a real reloader (table compiles) on a shared in-memory registry.

Each `Rig` is one gateway process: a `Reloader` compiling the config file, a
`RolloutRunner` with an injected wall clock, and request counters the test
fills as the proxy would (`RequestStats.record`). Several rigs on one
`MemoryStore` are replicas sharing a registry; a new rig on the same store
is a restarted gateway. The canary's share is read from the compiled table
each time, so each config field below is held to its effect on routing:
steps[].percent, steps[].pause, maxErrorRate, maxP99, minRequests,
rollbackOnFailure.
"""

from __future__ import annotations

from pathlib import Path

from gateway.ops.request_stats import RequestStats
from gateway.rollout.machine import Command, Phase, RolloutStatus
from gateway.rollout.record import rollout_key
from gateway.rollout.runner import RolloutRunner
from gateway.rollout.window import Counters
from gateway.runtime.reload import Reloader
from portway.registry.memory import MemoryRegistry, MemoryStore

NAME = "shop/api"


def config(
    *,
    steps: str = "[{percent: 10, pause: 30s}, {percent: 50, pause: 30s}]",
    limits: str = "maxErrorRate: 5, maxP99: 500ms, minRequests: 20",
) -> str:
    return f"""\
version: 1
listeners:
  - {{name: web, protocol: HTTP, address: 127.0.0.1, port: 18080}}
routes:
  - name: shop
    rules:
      - name: api
        backendRefs: [{{name: stable}}]
        canary:
          backend: canary
          rollout: {{steps: {steps}, {limits}}}
backends:
  - name: stable
    endpoints: [{{address: 127.0.0.1, port: 9000, cluster: a}}]
  - name: canary
    endpoints: [{{address: 127.0.0.1, port: 9001, cluster: b}}]
"""


class Rig:
    """One gateway process: reloader + runner + counters, on a shared registry store."""

    def __init__(
        self,
        path: Path,
        store: MemoryStore,
        identity: str,
        *,
        registry: type[MemoryRegistry] = MemoryRegistry,
    ) -> None:
        self.reloader = Reloader(path, lambda table, active: None)
        self.stats = RequestStats()
        self.now = 1000.0
        self.runner = RolloutRunner(
            self.reloader,
            measure=self.counters,
            identity=identity,
            open_registry=lambda _config: registry(store),
            clock=lambda: self.now,
        )

    async def counters(self) -> Counters:
        return Counters(self.stats.requests, self.stats.backend_durations)

    async def start(self) -> Rig:
        await self.reloader.load_initial()
        await self.runner.start()
        await self.reloader.apply_pending()
        return self

    async def round(self, advance_s: float = 0.0) -> None:
        self.now += advance_s
        await self.runner.sync()
        await self.reloader.apply_pending()

    def traffic(self, n: int, *, code: int = 200, duration_s: float = 0.01) -> None:
        for _ in range(n):
            self.stats.record("shop", "canary", "b", code, duration_s)

    @property
    def canary_percent(self) -> float:
        split = self.reloader.table.routes[0].rules[0].split
        return float(split.canary_config.percent)

    @property
    def status(self) -> RolloutStatus:
        return self.runner.status(self.runner.find(NAME))


async def rig(tmp_path: Path, text: str, store: MemoryStore, identity: str = "gw-a") -> Rig:
    path = tmp_path / "gw.yaml"
    if not path.exists():
        tmp_path.mkdir(exist_ok=True)
        path.write_text(text)
    return await Rig(path, store, identity).start()


async def test_a_healthy_canary_walks_the_steps_after_each_pause_and_is_promoted(
    tmp_path: Path,
) -> None:
    gw = await rig(tmp_path, config(), MemoryStore())
    assert gw.canary_percent == 0.0  # pending until a driver starts it
    await gw.round()
    assert (gw.status.phase, gw.canary_percent) == (Phase.PROGRESSING, 10.0)
    gw.traffic(40)
    await gw.round(29.0)
    assert gw.canary_percent == 10.0  # the step's pause is not over
    await gw.round(1.0)
    assert (gw.status.step, gw.canary_percent) == (1, 50.0)
    gw.traffic(40)
    await gw.round(30.0)
    assert (gw.status.phase, gw.canary_percent) == (Phase.PROMOTED, 100.0)
    assert gw.reloader.rollout_weights == {NAME: 100.0}


async def test_errors_over_max_error_rate_roll_back_at_once_and_a_higher_limit_passes_them(
    tmp_path: Path,
) -> None:
    gw = await rig(tmp_path, config(), MemoryStore())
    await gw.round()
    gw.traffic(36)
    gw.traffic(4, code=503)  # 10% > maxErrorRate 5
    await gw.round(1.0)
    assert (gw.status.phase, gw.canary_percent) == (Phase.ROLLED_BACK, 0.0)
    assert gw.status.reason.startswith("rolled back: error rate 10.0% > 5%")

    lenient = await rig(tmp_path / "x", config(limits="maxErrorRate: 20"), MemoryStore())
    await lenient.round()
    lenient.traffic(36)
    lenient.traffic(4, code=503)
    await lenient.round(30.0)
    assert (lenient.status.step, lenient.canary_percent) == (1, 50.0)


async def test_a_canary_slower_than_max_p99_is_rolled_back(tmp_path: Path) -> None:
    gw = await rig(tmp_path, config(), MemoryStore())
    await gw.round()
    gw.traffic(30, duration_s=0.9)
    await gw.round(1.0)
    assert (gw.status.phase, gw.canary_percent) == (Phase.ROLLED_BACK, 0.0)
    assert "p99" in gw.status.reason


async def test_a_step_with_fewer_than_min_requests_is_held_past_its_pause(tmp_path: Path) -> None:
    gw = await rig(tmp_path, config(), MemoryStore())
    await gw.round()
    gw.traffic(19)
    await gw.round(300.0)
    assert (gw.status.step, gw.canary_percent) == (0, 10.0)
    gw.traffic(1)  # minRequests 20 reached
    await gw.round(0.1)
    assert (gw.status.step, gw.canary_percent) == (1, 50.0)


async def test_rollback_on_failure_off_pauses_at_the_failing_weight(tmp_path: Path) -> None:
    text = config(limits="maxErrorRate: 5, minRequests: 20, rollbackOnFailure: false")
    gw = await rig(tmp_path, text, MemoryStore())
    await gw.round()
    gw.traffic(20, code=500)
    await gw.round(1.0)
    assert (gw.status.phase, gw.canary_percent) == (Phase.PAUSED, 10.0)
    await gw.round(100.0)
    assert gw.canary_percent == 10.0  # held for a person to decide


async def test_a_restarted_gateway_serves_the_stored_step_and_judges_it_afresh(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    first = await rig(tmp_path, config(), store)
    await first.round()
    first.traffic(40)
    await first.round(30.0)
    assert first.canary_percent == 50.0
    await first.runner.close()

    second = await rig(tmp_path, config(), store)  # a new process, same registry
    assert (second.status.step, second.canary_percent) == (1, 50.0)  # from its first table
    second.now = first.now + 600.0  # long after the step began
    await second.round()
    second.traffic(40)
    await second.round(29.0)
    assert second.canary_percent == 50.0  # its own window has not covered a pause yet
    await second.round(1.0)
    assert (second.status.phase, second.canary_percent) == (Phase.PROMOTED, 100.0)


async def test_one_replica_drives_the_others_follow_and_take_over_when_it_stops(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    a = await rig(tmp_path, config(), store, "gw-a")
    b = await rig(tmp_path, config(), store, "gw-b")
    await a.round()
    await b.round()
    assert (a.runner.driving, b.runner.driving) == (True, False)
    assert b.runner.driver == "gw-a"
    assert b.canary_percent == 10.0
    b.traffic(100)  # b's own counters are not judged: it does not drive
    await a.round(30.0)  # a renews its lease as it goes
    await b.round(30.0)
    assert (b.status.step, b.runner.driving) == (0, False)
    a.traffic(40)
    await a.round(0.1)
    await b.round(0.1)
    assert (a.canary_percent, b.canary_percent) == (50.0, 50.0)
    b.now += a.runner.lease_ttl_s + 1  # a stopped renewing its lease
    await b.round()
    assert b.runner.driving
    b.traffic(40)
    await b.round(30.0)
    assert b.status.phase is Phase.PROMOTED


async def test_an_operator_command_through_any_replica_wins_over_a_racing_step(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    operator = await rig(tmp_path, config(), store, "gw-b")

    class PausedJustBeforeTheWrite(MemoryRegistry):
        """The operator's pause lands between the driver's read and its write."""

        async def write_state(self, key: str, value: str, *, version: int) -> None:
            if key == rollout_key(NAME) and '"step": 1' in value:
                await operator.runner.command("shop", Command.PAUSE)
            await super().write_state(key, value, version=version)

    path = tmp_path / "gw.yaml"
    driver = await Rig(path, store, "gw-a", registry=PausedJustBeforeTheWrite).start()
    await driver.round()
    driver.traffic(40)
    await driver.round(30.0)  # the step to 50% loses its compare-and-set
    await driver.round()
    await operator.round()
    assert (driver.status.phase, driver.status.step) == (Phase.PAUSED, 0)
    assert (driver.canary_percent, operator.canary_percent) == (10.0, 10.0)
    assert driver.status.reason == "pause by operator"


async def test_abort_promote_and_resume_reach_the_table(tmp_path: Path) -> None:
    gw = await rig(tmp_path, config(), MemoryStore())
    await gw.round()
    _, aborted = await gw.runner.command("shop/api", Command.ABORT)
    await gw.reloader.apply_pending()
    assert (aborted.phase, gw.canary_percent) == (Phase.ROLLED_BACK, 0.0)
    await gw.runner.command("shop", Command.RESUME)
    await gw.reloader.apply_pending()
    assert gw.canary_percent == 10.0
    await gw.runner.command("shop", Command.PROMOTE)
    await gw.reloader.apply_pending()
    assert gw.canary_percent == 100.0


async def test_a_changed_rollout_spec_starts_a_new_rollout(tmp_path: Path) -> None:
    store = MemoryStore()
    gw = await rig(tmp_path, config(), store)
    await gw.round()
    gw.traffic(40)
    await gw.round(30.0)
    assert gw.canary_percent == 50.0
    (tmp_path / "gw.yaml").write_text(config(steps="[{percent: 20, pause: 30s}]"))
    gw.reloader.request_reload()
    await gw.reloader.apply_pending()
    assert gw.canary_percent == 0.0  # the stored status belongs to the old spec
    await gw.round()
    assert (gw.status.step, gw.canary_percent) == (0, 20.0)


async def test_an_unreachable_registry_keeps_the_weights_and_drives_nothing(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    gw = await rig(tmp_path, config(), store)
    await gw.round()
    store.set_available(False)
    gw.traffic(40)
    await gw.round(30.0)
    assert (gw.runner.up, gw.runner.driving, gw.canary_percent) == (False, False, 10.0)
    store.set_available(True)
    await gw.round()
    assert (gw.runner.up, gw.canary_percent) == (True, 50.0)
