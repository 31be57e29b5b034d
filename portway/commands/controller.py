"""`portway controller`: run one cluster's controller (or `--print` what it would publish).

Connects with `--kubeconfig`/`--context` when given, else the in-cluster
service account when running in a pod, else the default kubeconfig. Writes
to the registry chosen by `--registry`, as the publisher identity `--owner`
(default `portway-controller/<cluster>`), so a restarted process or the
replica that takes the Lease over adopts the records in place. JSON logs on
stderr; /healthz, /readyz and /metrics on `--admin`. SIGTERM/SIGINT stop it
without withdrawing anything (records live on until their TTL unless the
next leader adopts them first). Exit status: 0 stopped cleanly or printed, 1 cannot connect or
list, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from typing import Any

HELP = "run a cluster's controller: watch Kubernetes, publish NodePort endpoints, Lease election"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--cluster", required=True, help="cluster name, the last segment of every registry key")
    add("--region", default="", help="region of the records (default: nodes' region label)")
    add(
        "--registry",
        choices=["etcd", "consul", "files"],
        default="files",
        help="registry backend to publish to (default files)",
    )
    add(
        "--etcd",
        action="append",
        default=[],
        metavar="URL",
        help="etcd client URL, repeatable (default http://127.0.0.1:2379)",
    )
    add(
        "--consul",
        default=None,
        metavar="ADDR",
        help="Consul agent address (default 127.0.0.1:8500)",
    )
    add("--dir", default=None, help="files registry directory (default ./registry)")
    add("--root", default="", help="key root before portway/v1/services/ (default none)")
    add(
        "--owner",
        default=None,
        metavar="IDENTITY",
        help="publisher identity the records are held by; a restarted controller or a new "
        "leader with the same one takes them over without a gap, a writer with another is "
        "refused (default portway-controller/CLUSTER)",
    )
    add("--kubeconfig", default=None, metavar="FILE", help="kubeconfig file (default: in-cluster)")
    add("--context", default=None, help="kubeconfig context (default: the current one)")
    add(
        "--address-preference",
        default="ExternalIP,InternalIP",
        help="node address types in order of preference (default ExternalIP,InternalIP)",
    )
    add(
        "--node-port-range",
        default="30000-32767",
        help="the apiserver's --service-node-port-range (default 30000-32767)",
    )
    add(
        "--tier-range",
        action="append",
        default=[],
        metavar="TIER=FIRST-LAST",
        help="nodePort block of a tier (portway.io/tier), repeatable (default none)",
    )
    add(
        "--lease-name", default="portway-controller", help="Lease name (default portway-controller)"
    )
    add(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", "portway-system"),
        help="namespace of the Lease (default $POD_NAMESPACE or portway-system)",
    )
    add(
        "--identity",
        default=os.environ.get("POD_NAME") or socket.gethostname(),
        help="Lease holder identity (default $POD_NAME or the host name)",
    )
    add(
        "--lease-duration",
        type=float,
        default=6.0,
        metavar="S",
        help="Lease duration; renew deadline 2/3 and retry period 2/15 of it; a takeover "
        "after a crash takes up to 17/15 of it and must end before the records expire "
        "(default 6, within the default TTL's 10 s)",
    )
    add("--ttl", type=float, default=15.0, metavar="S", help="registry record TTL (default 15)")
    add(
        "--admin",
        default="127.0.0.1:9902",
        metavar="HOST:PORT",
        help="address of /healthz, /readyz, /metrics (default 127.0.0.1:9902)",
    )
    add("--print", action="store_true", help="list once, print the records as JSON, exit")
    add("--log-level", default="info", help="debug, info, warning, error (default info)")


def settings_from_args(args: argparse.Namespace) -> Any:
    from controller.objects import AddressType, ClusterSettings, PortRange

    tiers: dict[str, PortRange] = {}
    for item in args.tier_range:
        tier, sep, text = item.partition("=")
        if not sep or not tier:
            raise ValueError(f"--tier-range {item!r}: expected TIER=FIRST-LAST")
        tiers[tier] = PortRange.parse(text)
    try:
        preference = tuple(AddressType(x.strip()) for x in args.address_preference.split(","))
    except ValueError:
        allowed = ", ".join(t.value for t in AddressType)
        raise ValueError(f"--address-preference: address types are {allowed}") from None
    return ClusterSettings(
        cluster=args.cluster,
        region=args.region,
        address_preference=preference,
        node_port_range=PortRange.parse(args.node_port_range),
        tier_ranges=tiers,
    )


def options_from_args(args: argparse.Namespace) -> Any:
    from controller.app import ControllerOptions
    from controller.leader import ElectionSettings

    host, sep, port = args.admin.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--admin {args.admin!r}: expected HOST:PORT")
    duration = args.lease_duration
    return ControllerOptions(
        settings=settings_from_args(args),
        identity=args.identity,
        lease_name=args.lease_name,
        lease_namespace=args.namespace,
        election=ElectionSettings(
            identity=args.identity,
            lease_duration_s=duration,
            renew_deadline_s=duration * 2 / 3,
            retry_period_s=duration * 2 / 15,
        ),
        ttl_s=args.ttl,
        admin_host=host.strip("[]") or "127.0.0.1",
        admin_port=int(port),
    )


def api_client_from_args(args: argparse.Namespace) -> Any:
    from kubernetes import client
    from kubernetes import config as kube_config

    config: Any = kube_config

    configuration = client.Configuration()
    if args.kubeconfig or args.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_kube_config(
            config_file=args.kubeconfig, context=args.context, client_configuration=configuration
        )
    else:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


def run(args: argparse.Namespace) -> int:
    from portway.telemetry import setup_logging

    setup_logging(args.log_level.upper())
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"portway controller: error: {exc}", file=sys.stderr)
        return 2
    try:
        api_client = api_client_from_args(args)
    except Exception as exc:
        print(f"portway controller: cannot configure Kubernetes access: {exc}", file=sys.stderr)
        return 1
    if args.print:
        return asyncio.run(_print(api_client, options))
    return asyncio.run(_serve(args, api_client, options))


async def _print(api_client: Any, options: Any) -> int:
    import time

    from controller.app import list_once

    try:
        derivation = await list_once(api_client, options.settings, time.time())
    except Exception as exc:
        print(f"portway controller: cannot list the cluster: {exc}", file=sys.stderr)
        return 1
    records = derivation.records()
    out = {
        "cluster": options.settings.cluster,
        "records": [records[k].to_dict() for k in sorted(records, key=lambda k: k.path())],
        "violations": [
            {"service": v.service, "port": v.port, "nodePort": v.node_port, "reason": v.reason}
            for v in derivation.violations()
        ],
    }
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def registry_from_args(args: argparse.Namespace, *, owner: str = "") -> Any:
    """The registry the flags name; `owner` is the publisher identity (doctor only reads)."""
    from portway.registry.backends import open_registry

    endpoints = args.etcd if args.registry == "etcd" else [args.consul] if args.consul else []
    return open_registry(
        args.registry, path=args.dir, endpoints=endpoints, root=args.root, owner=owner
    )


def owner_from_args(args: argparse.Namespace) -> str:
    from controller.publish import controller_owner

    return str(args.owner or controller_owner(args.cluster))


async def _serve(args: argparse.Namespace, api_client: Any, options: Any) -> int:
    from controller.app import Controller

    registry = registry_from_args(args, owner=owner_from_args(args))
    controller = Controller(options, api_client, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await controller.run(stop)
    finally:
        await registry.close()
    return 0
