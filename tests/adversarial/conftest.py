"""The adversarial suite uses the gateway tests' real fixtures (gateway, raw upstream)."""

from tests.gateway.conftest import make_gateway, raw_upstream, upstream

__all__ = ["make_gateway", "raw_upstream", "upstream"]
