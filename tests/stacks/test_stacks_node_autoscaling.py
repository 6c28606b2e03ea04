"""Every stack declares node autoscaling for each of its GPU node groups / pools."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.policies import gpu_node_autoscaling
from infra.preflight import stack_files

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"

GPU_GROUP_TYPES = ("aws:eks/nodeGroup:NodeGroup", "gcp:container/nodePool:NodePool")


@pytest.mark.parametrize(("stack_dir", "stack"), stack_files(STACKS_DIR))
def test_stack_gpu_pools_autoscale(stack_dir, stack, tree) -> None:
    result = tree.run(stack_dir, stack)
    assert gpu_node_autoscaling(result.resources) == []


def test_the_rule_saw_gpu_pools_on_both_clouds(tree) -> None:
    seen = set()
    for stack_dir, stack in stack_files(STACKS_DIR):
        for resource in tree.run(stack_dir, stack).resources:
            if resource.type == GPU_GROUP_TYPES[0] and "gpu-" in resource.name:
                seen.add("eks")
                scaling = resource.inputs["scalingConfig"]
                assert scaling["maxSize"] > scaling["minSize"], resource.name
            if resource.type == GPU_GROUP_TYPES[1] and "-gpu-" in resource.name:
                seen.add("gke")
                limits = resource.inputs["autoscaling"]
                assert limits["totalMaxNodeCount"] > limits["totalMinNodeCount"], resource.name
    assert seen == {"eks", "gke"}
