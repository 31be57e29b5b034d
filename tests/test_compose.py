"""docker-compose.yml and the Dockerfile, checked for structure (no Docker engine here).

What can be checked without running them is: the services the stack
promises, what each builds or pulls, the ports they publish, that every
mounted path exists, healthchecks and the dependencies waiting on them,
that the portway commands parse with the real CLI, that the mounted
configs pass `portway check` and point at the stack's own services, and
that the image is multi-stage, builds the compiled hot path and runs as
a non-root user.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from gateway.config.loader import load_config
from portway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
NO_HEALTHCHECK = {"otel-collector"}  # distroless image: nothing inside to run a probe with


def compose() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_the_stack_has_every_service_the_design_names() -> None:
    assert set(services()) == {
        "etcd",
        "consul",
        "controller",
        "gateway",
        "otel-collector",
        "prometheus",
    }


def test_portway_services_build_this_repository_with_its_dockerfile() -> None:
    for name in ("controller", "gateway"):
        build = services()[name]["build"]
        assert (ROOT / build["context"]).resolve() == ROOT
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    others = set(services()) - {"controller", "gateway"}
    assert all(re.fullmatch(r"[\w./-]+:[\w.-]+", services()[s]["image"]) for s in others)


def test_every_bind_mount_exists_and_config_is_mounted_read_only() -> None:
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            if not source.startswith("."):
                assert source in compose()["volumes"], (name, volume)
                continue
            assert (ROOT / source).exists(), (name, volume)
            assert rest.endswith(":ro"), (name, volume)
    for name in ("controller", "gateway"):
        assert "./config:/etc/portway:ro" in services()[name]["volumes"]


def test_published_ports_do_not_collide_and_expose_the_entry_points() -> None:
    published = [
        (name, port.split(":")[0]) for name, s in services().items() for port in s.get("ports", [])
    ]
    hosts = [host for _, host in published]
    assert len(hosts) == len(set(hosts)), published
    assert {"8080", "9901"} <= {h for n, h in published if n == "gateway"}
    assert ("prometheus", "9090") in published and ("etcd", "2379") in published


def test_healthchecks_and_dependencies_wait_for_them() -> None:
    for name, service in services().items():
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in service
            continue
        check = service["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["retries"] > 0, name
    for name, service in services().items():
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services(), (name, dep)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services()[dep], (name, dep)
    assert services()["gateway"]["depends_on"]["etcd"]["condition"] == "service_healthy"


def test_portway_healthchecks_probe_the_admin_ports_the_commands_open() -> None:
    gateway_config = load_config(ROOT / "config" / "compose" / "gateway.yaml")
    probes = {
        name: " ".join(services()[name]["healthcheck"]["test"])
        for name in ("controller", "gateway")
    }
    assert f"127.0.0.1:{gateway_config.admin.port}/readyz" in probes["gateway"]
    admin = next(a for a in command_of(services()["controller"]) if a.startswith("--admin="))
    assert admin == "--admin=0.0.0.0:9902" and "127.0.0.1:9902/healthz" in probes["controller"]


@pytest.mark.parametrize("name", ["controller", "gateway"])
def test_portway_commands_parse_with_the_real_cli(name: str) -> None:
    args = build_parser().parse_args(command_of(services()[name]))
    assert args.verb == name


def test_the_controller_runs_in_kubeconfig_mode_publishing_to_the_stacks_etcd() -> None:
    args = build_parser().parse_args(command_of(services()["controller"]))
    assert args.registry == "etcd" and args.etcd == ["http://etcd:2379"]
    kubeconfig = Path(args.kubeconfig)
    assert kubeconfig.parts[:3] == ("/", "etc", "portway")
    assert (ROOT / "config" / kubeconfig.relative_to("/etc/portway")).is_file()
    assert services()["controller"]["environment"]["POD_NAMESPACE"]


def test_the_gateway_config_passes_check_and_uses_the_stacks_services() -> None:
    args = build_parser().parse_args(command_of(services()["gateway"]))
    config = load_config(ROOT / "config" / Path(args.config).relative_to("/etc/portway"))
    assert config.registry.type == "etcd" and config.registry.endpoints == ("http://etcd:2379",)
    assert config.telemetry.otlp_endpoint == "http://otel-collector:4318"
    listener_ports = {str(lst.port) for lst in config.listeners} | {str(config.admin.port)}
    published = {p.split(":")[1] for p in services()["gateway"]["ports"]}
    assert published == listener_ports
    assert all(lst.address == "0.0.0.0" for lst in config.listeners)


def test_prometheus_scrapes_the_admin_ports_of_the_portway_services() -> None:
    volume = services()["prometheus"]["volumes"][0]
    scrape = YAML(typ="safe").load((ROOT / volume.split(":")[0]).read_text())
    targets = {
        t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {"gateway:9901", "controller:9902"}


def test_the_collector_receives_otlp_http_where_the_gateway_sends_it() -> None:
    volume = services()["otel-collector"]["volumes"][0]
    config = YAML(typ="safe").load((ROOT / volume.split(":")[0]).read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "4318:4318" in services()["otel-collector"]["ports"]


def test_the_image_is_multi_stage_non_root_and_builds_the_compiled_hot_path() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.M)
    assert len(stages) >= 2 and stages[0][1] == "build"
    assert "COPY --from=build" in text
    assert re.search(r"pip install [^\n]*\s\.\s", text)
    assert "gcc" in text and "c.state == 'compiled'" in text
    user = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), path


def test_dockerignore_keeps_local_builds_out_of_the_image() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "build", "**/*.so"} <= ignored
