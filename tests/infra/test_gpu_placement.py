"""Cross-component: GPU nodes the Pulumi components render admit the pods the driver renders.

For every machine of every catalog accelerator, on EKS and on GKE, the node group / node
pool is rendered under Pulumi mocks and the replica Deployment by the Kubernetes driver's
``render_manifests``; the pod is then checked against the node the way the scheduler
would, field by field: every ``nodeSelector`` pair is a node label, every NoSchedule /
NoExecute taint is tolerated (key, operator, value, effect), and the GPU request fits the
node. Guards show the check rejects a pod for another accelerator and an untolerated taint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from control_plane.adapters.k8s_manifests import render_manifests
from control_plane.ports.cluster import ReplicaSpec
from infra.eks import EksCluster, EksClusterArgs, GpuNodeGroupSpec
from infra.gcp_network import GcpNetwork, GcpNetworkArgs
from infra.gke import GkeCluster, GkeClusterArgs, GpuNodePoolSpec
from infra.offline import OfflineRun
from plinth.accelerators import (
    ACCELERATORS,
    AWS_GPU_INSTANCES,
    GCP_GPU_MACHINES,
    GPU_RESOURCE,
)

_K8S_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
_K8S_EFFECTS["NO_EXECUTE"] = "NoExecute"


@dataclass(frozen=True)
class Node:
    """What the scheduler sees of a node of one group/pool."""

    machine: str
    labels: dict[str, str]
    taints: list[dict[str, str]]  # Kubernetes spelling: {key, value, effect}
    gpus: int


def _pool_name(machine: str) -> str:
    return machine.replace(".", "-")


def _eks_nodes(run: Any, tags: Any) -> dict[str, Node]:
    groups = tuple(
        GpuNodeGroupSpec(_pool_name(t), t, max_size=1, capacity="on-demand")
        for t in AWS_GPU_INSTANCES
    )
    args = EksClusterArgs(
        tags=tags,
        kubernetes_version="1.33",
        vpc_id="vpc-1",
        private_subnet_ids=["subnet-a", "subnet-b"],
        gpu_node_groups=groups,
    )
    result: OfflineRun = run(lambda: {"name": EksCluster("p", args).cluster_name})
    nodes = {}
    for instance_type, instance in AWS_GPU_INSTANCES.items():
        group = result.one("aws:eks/nodeGroup:NodeGroup", f"p-gpu-{_pool_name(instance_type)}")
        nodes[instance_type] = Node(
            instance_type,
            dict(group.inputs["labels"]),
            [{**t, "effect": _K8S_EFFECTS[t["effect"]]} for t in group.inputs["taints"]],
            instance.gpus,
        )
    return nodes


def _gke_nodes(run: Any, tags: Any) -> dict[str, Node]:
    pools = tuple(
        GpuNodePoolSpec(_pool_name(m), machine_type=m, max_nodes=1) for m in GCP_GPU_MACHINES
    )

    def program() -> dict[str, Any]:
        network = GcpNetwork("net", GcpNetworkArgs(tags=tags, region="us-central1"))
        cluster = GkeCluster(
            "p",
            GkeClusterArgs(
                tags=tags,
                project="plinth-prod",
                region="us-central1",
                network=network.network_id,
                subnetwork=network.subnetwork_self_link,
                gpu_node_pools=pools,
            ),
        )
        return {"name": cluster.cluster_name}

    result: OfflineRun = run(program)
    nodes = {}
    for machine_type in GCP_GPU_MACHINES:
        pool = result.one("gcp:container/nodePool:NodePool", f"p-gpu-{_pool_name(machine_type)}")
        config = pool.inputs["nodeConfig"]
        (guest,) = config["guestAccelerators"]
        nodes[machine_type] = Node(
            machine_type,
            dict(config["labels"]),
            [{**t, "effect": _K8S_EFFECTS[t["effect"]]} for t in config["taints"]],
            int(guest["count"]),
        )
    return nodes


def _pod(accelerator: str) -> dict[str, Any]:
    spec = ReplicaSpec("dep", "model", "/srv/model", "python", accelerator=accelerator)
    deployment = next(m for m in render_manifests(spec, 1) if m["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _tolerates(toleration: dict[str, str], taint: dict[str, str]) -> bool:
    """Kubernetes' ToleratesTaint, field by field."""
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    operator = toleration.get("operator", "Equal")
    if not toleration.get("key"):
        return operator == "Exists"  # an empty key with Exists tolerates everything
    if toleration["key"] != taint["key"]:
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and toleration.get("value", "") == taint.get("value", "")


def admission_problems(pod: dict[str, Any], node: Node) -> list[str]:
    """Why the scheduler would not place ``pod`` on ``node`` (empty: it would)."""
    problems = [
        f"nodeSelector {key}={value!r} but node has {node.labels.get(key)!r}"
        for key, value in (pod.get("nodeSelector") or {}).items()
        if node.labels.get(key) != value
    ]
    tolerations = pod.get("tolerations") or []
    problems += [
        f"taint {taint} not tolerated"
        for taint in node.taints
        if taint["effect"] in ("NoSchedule", "NoExecute")
        and not any(_tolerates(t, taint) for t in tolerations)
    ]
    for container in pod["containers"]:
        wanted = int(container["resources"]["limits"].get(GPU_RESOURCE, "0"))
        if wanted > node.gpus:
            problems.append(f"{container['name']} wants {wanted} GPUs, node has {node.gpus}")
    return problems


def _machines(nodes: dict[str, Node], table: dict[str, Any], accelerator: str) -> list[Node]:
    return [nodes[m] for m, spec in table.items() if spec.accelerator == accelerator]


@pytest.fixture
def nodes(run: Any, tags: Any) -> dict[str, dict[str, Node]]:
    return {"eks": _eks_nodes(run, tags), "gke": _gke_nodes(run, tags)}


def test_every_catalog_accelerator_has_a_machine_on_some_cloud() -> None:
    for name in ACCELERATORS:
        machines = [m for m in AWS_GPU_INSTANCES.values() if m.accelerator == name]
        machines += [m for m in GCP_GPU_MACHINES.values() if m.accelerator == name]
        assert machines, f"{name} has no machine"
    for table in (AWS_GPU_INSTANCES, GCP_GPU_MACHINES):
        assert {m.accelerator for m in table.values()} <= set(ACCELERATORS)


def test_nodes_of_every_accelerator_admit_its_pods_on_both_clouds(nodes) -> None:
    checked = 0
    for cloud, table in (("eks", AWS_GPU_INSTANCES), ("gke", GCP_GPU_MACHINES)):
        for name, accelerator in ACCELERATORS.items():
            for node in _machines(nodes[cloud], table, name):
                # The Truss name, an alias, and the whole node's worth of GPUs all schedule.
                for spelling in (name, *accelerator.aliases, f"{name.lower()}:{node.gpus}"):
                    problems = admission_problems(_pod(spelling), node)
                    assert problems == [], f"{cloud} {node.machine} vs {spelling}: {problems}"
                    checked += 1
    assert checked >= len(AWS_GPU_INSTANCES) + len(GCP_GPU_MACHINES)


def test_nodes_refuse_pods_of_other_accelerators(nodes) -> None:
    for cloud, table in (("eks", AWS_GPU_INSTANCES), ("gke", GCP_GPU_MACHINES)):
        for machine, spec in table.items():
            for other in ACCELERATORS:
                if other == spec.accelerator:
                    continue
                problems = admission_problems(_pod(other), nodes[cloud][machine])
                assert any("nodeSelector" in p for p in problems), (cloud, machine, other)


def test_check_rejects_untolerated_taints_and_cpu_pods_stay_off_gpus(nodes) -> None:
    node = nodes["gke"]["a3-highgpu-8g"]
    pod = _pod("H100")
    pod["tolerations"] = [{**pod["tolerations"][0], "effect": "NoExecute"}]
    assert any("not tolerated" in p for p in admission_problems(pod, node))
    cpu_pod = next(
        m
        for m in render_manifests(ReplicaSpec("d", "m", "/srv", "python"), 1)
        if m["kind"] == "Deployment"
    )["spec"]["template"]["spec"]
    for cloud in nodes.values():
        for gpu_node in cloud.values():
            assert any("not tolerated" in p for p in admission_problems(cpu_pod, gpu_node))
