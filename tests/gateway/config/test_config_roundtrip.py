"""Property: any valid config, dumped to YAML or JSON, loads back equal."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from ruamel.yaml import YAML

from gateway.config.model import (
    Backend,
    BackendRef,
    Canary,
    CanaryOverride,
    GatewayConfig,
    HashOn,
    HashSource,
    HeaderMatch,
    LbPolicy,
    Listener,
    ListenerProtocol,
    LoadBalancer,
    PathMatch,
    PathMatchType,
    Registry,
    Retry,
    Route,
    RouteMatch,
    Rule,
    StaticEndpoint,
    Timeouts,
)
from gateway.config.source import parse_source
from gateway.config.validation import validate_shape

ADAPTER = TypeAdapter(GatewayConfig)
names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\Z")
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
durations = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
ipv4 = st.ip_addresses(v=4).map(str)
ports = st.integers(1, 65535)

endpoints = st.builds(
    StaticEndpoint,
    address=st.one_of(ipv4, st.ip_addresses(v=6).map(str)),
    port=ports,
    cluster=names,
    region=words,
    zone=words,
    weight=st.integers(1, 128),
)
backends = st.builds(
    Backend,
    name=names,
    endpoints=st.lists(endpoints, min_size=1, max_size=3).map(tuple),
    load_balancer=st.builds(
        LoadBalancer,
        policy=st.sampled_from(LbPolicy),
        hash_on=st.none() | st.builds(HashOn, source=st.sampled_from(HashSource), name=words),
    ),
)
matches = st.builds(
    RouteMatch,
    path=st.builds(PathMatch, type=st.sampled_from(PathMatchType), value=words),
    headers=st.lists(st.builds(HeaderMatch, name=words, value=words), max_size=2).map(tuple),
    method=st.none() | st.sampled_from(["GET", "POST"]),
)
rules = st.builds(
    Rule,
    backend_refs=st.lists(
        st.builds(BackendRef, name=names, weight=st.integers(0, 1000)), min_size=1, max_size=3
    ).map(tuple),
    matches=st.lists(matches, min_size=1, max_size=2).map(tuple),
    canary=st.none()
    | st.builds(
        Canary,
        backend=names,
        percent=st.floats(0, 100),
        header=st.none() | st.builds(CanaryOverride, name=words, value=words),
        sticky=st.booleans(),
    ),
    timeouts=st.builds(Timeouts, request_s=durations, connect_s=durations, idle_s=durations),
    retry=st.none() | st.builds(Retry, attempts=st.integers(0, 10), per_try_timeout_s=durations),
)
configs = st.builds(
    GatewayConfig,
    listeners=st.lists(
        st.builds(
            Listener,
            name=names,
            protocol=st.sampled_from([ListenerProtocol.HTTP, ListenerProtocol.TCP]),
            port=ports,
            address=ipv4,
        ),
        max_size=2,
    ).map(tuple),
    routes=st.lists(
        st.builds(Route, name=names, rules=st.lists(rules, min_size=1, max_size=2).map(tuple)),
        max_size=2,
    ).map(tuple),
    backends=st.lists(backends, max_size=2).map(tuple),
    registry=st.builds(Registry, debounce_s=durations),
)


def reload(text: str) -> GatewayConfig | None:
    parsed = parse_source(text, "dumped")
    config, issues = validate_shape(parsed.data, parsed.positions, "dumped")
    assert issues == []
    return config


@settings(max_examples=60, deadline=None)
@given(configs)
def test_dumped_yaml_loads_back_equal(config: GatewayConfig) -> None:
    buffer = io.StringIO()
    dumper = YAML(typ="safe", pure=True)
    # ruamel's flow style emits strings like `?0` unquoted, which no YAML parser
    # reads back; block style quotes them (hypothesis found it)
    dumper.default_flow_style = False
    dumper.dump(ADAPTER.dump_python(config, mode="json", by_alias=True), buffer)
    assert reload(buffer.getvalue()) == config


@settings(max_examples=30, deadline=None)
@given(configs)
def test_dumped_json_loads_back_equal(config: GatewayConfig) -> None:
    assert reload(json.dumps(ADAPTER.dump_python(config, mode="json", by_alias=True))) == config
