"""The drill report: JSON for machines, one self-contained HTML page for people."""

from __future__ import annotations

import json
import re
from xml.etree import ElementTree

from portway.drill.report import DrillReport, render_html
from portway.drill.scenario import Expectations
from portway.drill.timeline import FaultWindow, buckets
from portway.drill.verdict import judge, measure
from portway.traffic import Sample


def report() -> DrillReport:
    window = FaultWindow(
        "kill-endpoints", "kill-endpoints a <&>", 2.0, 4.0, frozenset({"a/a-1"}), True
    )
    samples = [Sample(i * 0.01, 200, "a/a-1" if i < 200 else "b/b-1", 0.002) for i in range(600)]
    expect = Expectations(max_failed_requests=0, max_failover_s=1)
    m = measure(samples, [window], 6.0, slow_request_s=None, node_regions={}, allowed_regions=())
    return DrillReport(
        "zone-loss",
        "desc",
        1_800_000_000.0,
        6.0,
        "http://127.0.0.1:19110",
        tuple(judge(expect, m)),
        m,
        tuple(buckets(samples, 6.0)),
    )


def test_json_report_holds_verdicts_faults_windows_and_timeline() -> None:
    body = json.loads(json.dumps(report().to_dict()))
    assert body["ok"] is True
    assert [e["name"] for e in body["expectations"]] == [
        "failed requests",
        "failover: kill-endpoints a <&>",
    ]
    assert body["faults"][0]["failover_s"] == 0.0 and body["faults"][0]["start_s"] == 2.0
    assert body["windows"]["during"]["share"] == {"b": 1.0}
    assert len(body["timeline"]) == 24 and body["timeline"][0]["served_rps"] == {"a": 100.0}


def test_html_report_is_self_contained_and_plots_the_fault() -> None:
    page = render_html(report())
    assert "<script" not in page
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing may be fetched"
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ElementTree.fromstring(svg)  # well-formed, text escaped
        assert root.tag.endswith("svg")
    assert 'class="fault"' in svgs[0] and "kill-endpoints a &lt;&amp;&gt;" in svgs[0]
    assert "polyline" in svgs[0] and ">a</text>" in svgs[0] and ">b</text>" in svgs[0]
