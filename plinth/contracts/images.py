"""Where Plinth's own images are published: one registry org for every plane and stack.

The control plane's Kubernetes driver (model server), the stack programs (gateway, node
agent) and the stacks' ``Pulumi.yaml`` defaults all name images under ``IMAGE_REGISTRY``
(tests/infra/test_infra_images.py holds the YAML defaults to these values).
"""

from __future__ import annotations

IMAGE_REGISTRY = "ghcr.io/plinth-dev"
IMAGE_VERSION = "0.1.0"


def plinth_image(name: str, version: str = IMAGE_VERSION) -> str:
    """``<registry org>/<name>:<version>``, e.g. ``ghcr.io/plinth-dev/gateway:0.1.0``."""
    return f"{IMAGE_REGISTRY}/{name}:{version}"


MODEL_SERVER_IMAGE = plinth_image("model-server")
GATEWAY_IMAGE = plinth_image("gateway")
NODE_AGENT_IMAGE = plinth_image("node-agent")
