"""The inference gateway: routes /models/{id}/{env}/... to replicas using the routing table.

Entry points: ``python -m gpu_nodes.gateway --control-plane-url URL --port PORT`` and
``create_gateway_app(GatewaySettings(...))``.
"""

from gpu_nodes.gateway.app import create_gateway_app
from gpu_nodes.gateway.routing import hash_api_key
from gpu_nodes.gateway.settings import GatewaySettings

__all__ = ["GatewaySettings", "create_gateway_app", "hash_api_key"]
