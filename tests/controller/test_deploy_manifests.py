"""deploy/: every manifest is a valid typed object, and the RBAC grants exactly the calls
the controller makes (controller/app.py KUBE_API_CALLS), nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.app import KUBE_API_CALLS
from controller.leader import LEASE_API_CALLS
from portway.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
MANIFESTS = sorted(DEPLOY.rglob("*.yaml"))


def typed(doc: dict[str, Any]) -> Any:
    """The document as the client's model (V1Deployment, V1ClusterRole, ...)."""
    kind = doc["kind"]
    version = doc["apiVersion"].split("/")[-1].capitalize()
    model = f"{version}{kind}"
    assert hasattr(client, model), f"no model {model} for {doc['apiVersion']} {kind}"
    return client.ApiClient()._ApiClient__deserialize(doc, model)


def load_all() -> list[Any]:
    return [typed(doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def of(kind: type) -> list[Any]:
    return [obj for obj in load_all() if isinstance(obj, kind)]


def grants(rules: list[Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def controller_deployment() -> client.V1Deployment:
    (deployment,) = [d for d in of(client.V1Deployment) if d.metadata.name == "portway-controller"]
    return deployment


def arg(container: client.V1Container, name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in container.args if a.startswith(f"--{name}=")]
    return value


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_loads_into_typed_models(path: Path):
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert docs
    for doc in docs:
        obj = typed(doc)
        assert obj.metadata.name == doc["metadata"]["name"]


def test_rbac_grants_exactly_the_calls_the_controller_makes():
    (cluster_role,) = of(client.V1ClusterRole)
    (role,) = of(client.V1Role)
    cluster_wide, in_namespace = grants(cluster_role.rules), grants(role.rules)
    assert cluster_wide | in_namespace == set(KUBE_API_CALLS)
    assert in_namespace == set(LEASE_API_CALLS), "Lease rights only in the controller's namespace"
    assert not cluster_wide & in_namespace
    named = [r for r in role.rules if r.resource_names]
    assert all(r.resource_names == [arg(controller_container(), "lease-name")] for r in named)
    assert role.metadata.namespace == arg(controller_container(), "namespace")


def controller_container() -> client.V1Container:
    (container,) = controller_deployment().spec.template.spec.containers
    return container


def test_bindings_give_the_roles_to_the_controllers_service_account():
    deployment = controller_deployment()
    account = deployment.spec.template.spec.service_account_name
    (sa,) = of(client.V1ServiceAccount)
    assert (sa.metadata.name, sa.metadata.namespace) == (account, deployment.metadata.namespace)
    for binding in of(client.V1ClusterRoleBinding) + of(client.V1RoleBinding):
        assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [
            ("ServiceAccount", account, deployment.metadata.namespace)
        ]
    (crb,) = of(client.V1ClusterRoleBinding)
    (rb,) = of(client.V1RoleBinding)
    assert crb.role_ref.name == of(client.V1ClusterRole)[0].metadata.name
    assert rb.role_ref.name == of(client.V1Role)[0].metadata.name


def test_controller_deployment_runs_two_replicas_with_probes_on_its_admin_port():
    deployment = controller_deployment()
    container = controller_container()
    assert deployment.spec.replicas == 2
    assert container.args[0] == "controller"
    admin_port = int(arg(container, "admin").rsplit(":", 1)[1])
    (port,) = container.ports
    assert (port.name, port.container_port) == ("admin", admin_port)
    assert (container.liveness_probe.http_get.path, container.liveness_probe.http_get.port) == (
        "/healthz",
        "admin",
    )
    assert container.readiness_probe.http_get.path == "/readyz"
    env = {e.name: e.value_from.field_ref.field_path for e in container.env}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}


def test_controller_args_are_accepted_by_the_command():
    from portway.cli import build_parser
    from portway.commands.controller import options_from_args

    args = build_parser().parse_args(controller_container().args)
    options = options_from_args(args)
    assert options.lease_name == "portway-controller"
    assert (options.admin_host, options.admin_port) == ("0.0.0.0", 9902)


def test_gateway_configmap_is_a_valid_config(tmp_path: Path, capsys):
    (config_map,) = of(client.V1ConfigMap)
    (deployment,) = [d for d in of(client.V1Deployment) if d.metadata.name == "portway-gateway"]
    (container,) = deployment.spec.template.spec.containers
    (mount,) = container.volume_mounts
    (config_arg,) = [a for a in container.args if a.startswith("--config=")]
    (key,) = config_map.data
    assert config_arg == f"--config={mount.mount_path}/{key}"
    path = tmp_path / key
    path.write_text(config_map.data[key])
    assert main(["check", str(path)]) == 0, capsys.readouterr()
    (service,) = of(client.V1Service)
    assert service.spec.selector == deployment.spec.selector.match_labels
