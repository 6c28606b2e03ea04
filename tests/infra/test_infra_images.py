"""One registry org: the driver's model-server image, the programs' and the stacks' defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from control_plane.adapters.k8s_manifests import DEFAULT_IMAGE, KubernetesOptions
from infra.programs.common import DEFAULT_GATEWAY_IMAGE, DEFAULT_NODE_AGENT_IMAGE
from plinth.contracts.images import (
    GATEWAY_IMAGE,
    IMAGE_REGISTRY,
    MODEL_SERVER_IMAGE,
    NODE_AGENT_IMAGE,
)

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"


def test_the_driver_and_the_programs_use_the_one_registry_org() -> None:
    assert DEFAULT_IMAGE == KubernetesOptions().image == MODEL_SERVER_IMAGE
    assert (DEFAULT_GATEWAY_IMAGE, DEFAULT_NODE_AGENT_IMAGE) == (GATEWAY_IMAGE, NODE_AGENT_IMAGE)
    for image in (MODEL_SERVER_IMAGE, GATEWAY_IMAGE, NODE_AGENT_IMAGE):
        assert image.startswith(f"{IMAGE_REGISTRY}/")


@pytest.mark.parametrize("stack", ["aws-region", "gcp-region", "self-hosted"])
def test_stack_yaml_defaults_are_the_same_images(stack: str) -> None:
    config = yaml.safe_load((STACKS_DIR / stack / "Pulumi.yaml").read_text())["config"]
    assert config["gatewayImage"]["default"] == GATEWAY_IMAGE
    assert config["nodeAgentImage"]["default"] == NODE_AGENT_IMAGE
