"""Choosing and opening a registry backend by name (config `registry.type`, CLI `--backend`)."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence

from portway.model import KEY_PREFIX
from portway.registry.base import Registry, RegistryError


class BackendKind(enum.Enum):
    FILES = "files"
    ETCD = "etcd"
    CONSUL = "consul"


DEFAULT_FILES_DIR = "registry"
DEFAULT_ETCD = "http://127.0.0.1:2379"
DEFAULT_CONSUL = "127.0.0.1:8500"


def root_from_prefix(prefix: str) -> str:
    """The root before `portway/v1/services/` in a configured key prefix."""
    if not prefix.endswith(KEY_PREFIX):
        raise RegistryError(f"registry prefix {prefix!r} must end with {KEY_PREFIX!r}")
    return prefix[: -len(KEY_PREFIX)]


def open_registry(
    kind: BackendKind | str,
    *,
    path: str | None = None,
    endpoints: Sequence[str] = (),
    root: str = "",
    owner: str = "",
) -> Registry:
    """A client for the named backend; `endpoints` are etcd URLs or one Consul address.

    `owner` is the publisher identity its records are held by (see
    `portway.registry.base`); "" gives the client an identity of its own.
    """
    kind = BackendKind(kind)
    if kind is BackendKind.FILES:
        from portway.registry.files import FilesRegistry

        directory = path or os.environ.get("PORTWAY_REGISTRY_DIR", DEFAULT_FILES_DIR)
        return FilesRegistry(directory, owner=owner)
    if kind is BackendKind.ETCD:
        from portway.registry.etcd import EtcdRegistry

        return EtcdRegistry(list(endpoints) or [DEFAULT_ETCD], root=root, owner=owner)
    from portway.registry.consul import ConsulRegistry

    address = endpoints[0] if endpoints else os.environ.get("CONSUL_HTTP_ADDR", DEFAULT_CONSUL)
    token = os.environ.get("CONSUL_HTTP_TOKEN")
    return ConsulRegistry(address, root=root, owner=owner, token=token)
