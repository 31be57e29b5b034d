"""The resilience drills' summary table (the upstream conftest's `drill_table`)."""

from __future__ import annotations

from tests.gateway.upstream.conftest import COLUMNS, drill_table


def test_the_table_shows_the_request_rate_and_the_last_request_at_a_faulty_node() -> None:
    row = {
        "scenario": "black-hole one node",
        "outcome": "passed",
        "rate": 500,
        "failed": 0,
        "out_of_rotation_s": 0.412,
        "last_request_at_faulty_s": 0.398,
    }
    header, rule, line = drill_table([row])
    titles = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(titles, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
    assert cells["rate (req/s)"] == "500"
    assert cells["last request at faulty (s)"] == "0.398"
    assert cells["moved within (s)"] == "0.412"
    assert cells["back after recovery (s)"] == ""  # a column the row lacks is left empty
    assert rule == "|" + "---|" * len(COLUMNS)
