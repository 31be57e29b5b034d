"""The buffered JSON access log (written through the observer)."""

from __future__ import annotations

import asyncio
import io
import json
import timeit
from pathlib import Path

from gateway.context import RequestLog
from gateway.ops.accesslog import FIELDS, AccessLog
from gateway.ops.observer import GatewayObserver


class CountingStream(io.BytesIO):
    writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


def _log(i: int = 0) -> RequestLog:
    return RequestLog(
        start_time=1700000000.25,
        method="POST",
        path=f"/p/{i}",
        response_code=201,
        response_flags="",
        bytes_received=10,
        bytes_sent=20,
        duration=0.0125,
        upstream_host="10.0.0.1:30080",
        upstream_cluster="a",
        route_name="web",
        x_forwarded_for="203.0.113.7",
        user_agent="curl/8",
        x_request_id="rid",
        authority="example.com",
        downstream_remote_address="127.0.0.1:4000",
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )


def test_lines_are_json_with_envoy_field_names() -> None:
    stream = CountingStream()
    log = AccessLog(stream)
    log.write(_log(1))
    log.flush()
    (line,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert tuple(line) == FIELDS
    assert line["start_time"] == "2023-11-14T22:13:20.250Z"
    assert line["duration"] == 12  # milliseconds, like Envoy's %DURATION%
    assert line["path"] == "/p/1"
    assert line["response_code"] == 201
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_writes_are_batched_not_one_syscall_per_line() -> None:
    stream = CountingStream()
    log = AccessLog(stream, max_buffered=100)
    for i in range(250):
        log.write(_log(i))
    assert stream.writes == 2
    log.close()
    assert stream.writes == 3
    assert len(stream.getvalue().splitlines()) == 250


async def test_timer_flushes_a_quiet_log() -> None:
    stream = CountingStream()
    log = AccessLog(stream, flush_interval_s=0.01)
    log.write(_log())
    assert stream.getvalue() == b""
    await asyncio.sleep(0.05)
    assert len(stream.getvalue().splitlines()) == 1


def test_file_target_appends_through_the_observer(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "access.log"
    access = AccessLog.open(str(target))
    assert access is not None
    obs = GatewayObserver(access_log=access)
    for i in range(3):
        log = _log(i)
        obs.end(obs.begin(log, {}), log)
    access.close()
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert [x["path"] for x in lines] == ["/p/0", "/p/1", "/p/2"]
    assert AccessLog.open("off") is None


def test_queueing_a_line_is_cheap() -> None:
    log = AccessLog(io.BytesIO(), max_buffered=1 << 30)
    entry = _log()
    n = 20000
    best = min(timeit.repeat(lambda: log.write(entry), number=n, repeat=5)) / n
    print(f"access log write (queue only): {best * 1e6:.2f} us/request")
    assert best < 5e-6


def test_hostile_strings_are_escaped_into_valid_json() -> None:
    stream = CountingStream()
    log = AccessLog(stream)
    entry = _log()
    entry.user_agent = 'evil "agent"\\\n\x00\u00e9'
    entry.path = "/a b/\u2603"
    log.write(entry)
    log.flush()
    line = json.loads(stream.getvalue().decode("utf-8"))
    assert line["user_agent"] == 'evil "agent"\\\n\x00\u00e9'
    assert line["path"] == "/a b/\u2603"
