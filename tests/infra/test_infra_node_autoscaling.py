"""GPU node autoscaling: what EksCluster + the platform declare, and the policy rule."""

from __future__ import annotations

import json
from typing import Any

import pulumi_kubernetes as k8s
import pytest

from infra import policies
from infra.eks import EksCluster, EksClusterArgs, GpuNodeGroupSpec
from infra.node_autoscaling import ClusterAutoscalerChart
from infra.offline import RecordedResource
from infra.platform import ClusterPlatform, ClusterPlatformArgs
from infra.policies import check, gpu_node_autoscaling

GROUPS = (
    GpuNodeGroupSpec("h100", "p5.48xlarge", max_size=4),
    GpuNodeGroupSpec("l4", "g6.xlarge", max_size=8, min_size=1, desired_size=1),
)
TEMPLATE = "k8s.io/cluster-autoscaler/node-template/"


def _program(tags, *, with_autoscaler: bool = True, groups=GROUPS):
    def program() -> dict[str, Any]:
        cluster = EksCluster(
            "plinth",
            EksClusterArgs(
                tags=tags,
                kubernetes_version="1.33",
                vpc_id="vpc-1",
                private_subnet_ids=["subnet-a", "subnet-b"],
                gpu_node_groups=groups,
            ),
        )
        chart = ClusterAutoscalerChart(cluster.cluster_name, "us-east-1", "1.33")
        ClusterPlatform(
            "plinth",
            ClusterPlatformArgs(
                provider=k8s.Provider("k8s", kubeconfig="{}"),
                tags=tags,
                control_plane_url="https://cp.example.com",
                gateway_image="gw:1",
                node_agent_image="agent:1",
                cluster_autoscaler=chart if with_autoscaler else None,
            ),
        )
        return {"name": cluster.cluster_name}

    return program


def _template_tags(result, group: str) -> dict[str, str]:
    asg = f"eks-gpu-{group}-mock"
    return {
        t.inputs["tag"]["key"]: t.inputs["tag"]["value"]
        for t in result.of_type("aws:autoscaling/tag:Tag")
        if t.inputs["autoscalingGroupName"] == asg
    }


def test_gpu_groups_carry_node_templates_for_scale_from_zero(run, tags) -> None:
    result = run(_program(tags))
    h100 = _template_tags(result, "h100")
    assert h100[f"{TEMPLATE}label/plinth.dev/gpu"] == "H100"
    assert h100[f"{TEMPLATE}label/plinth.dev/pool"] == "h100"
    assert h100[f"{TEMPLATE}taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert h100[f"{TEMPLATE}resources/nvidia.com/gpu"] == "8"
    assert _template_tags(result, "l4")[f"{TEMPLATE}resources/nvidia.com/gpu"] == "1"
    group = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-gpu-h100").inputs
    assert group["scalingConfig"]["minSize"] == 0 and group["scalingConfig"]["maxSize"] == 4


def test_cluster_autoscaler_has_its_own_pod_identity_scoped_to_the_cluster(run, tags) -> None:
    result = run(_program(tags))
    (addon,) = result.of_type("aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "eks-pod-identity-agent"
    (association,) = result.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert (association.inputs["namespace"], association.inputs["serviceAccount"]) == (
        "kube-system",
        "cluster-autoscaler",
    )
    role = result.one("aws:iam/role:Role", "plinth-cluster-autoscaler")
    assert association.inputs["roleArn"] == role.outputs["arn"]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    policy = json.loads(
        result.one("aws:iam/rolePolicy:RolePolicy", "plinth-cluster-autoscaler").inputs["policy"]
    )
    resize = next(s for s in policy["Statement"] if s.get("Sid") == "ResizeOwnGroups")
    assert "autoscaling:SetDesiredCapacity" in resize["Action"]
    assert resize["Condition"] == {
        "StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/plinth": "owned"}
    }
    nodegroups = next(s for s in policy["Statement"] if s.get("Sid") == "ReadNodegroups")
    assert nodegroups["Resource"] == [
        "arn:aws:eks:us-east-1:123456789012:cluster/plinth".replace("cluster/", "nodegroup/")
        + "/*/*"
    ]


def test_cluster_autoscaler_release_matches_the_cluster(run, tags) -> None:
    result = run(_program(tags))
    (release,) = [
        r
        for r in result.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "cluster-autoscaler"
    ]
    assert release.inputs["namespace"] == "kube-system"
    values = release.inputs["values"]
    assert values["autoDiscovery"]["clusterName"] == "plinth"
    assert values["image"]["tag"] == "v1.33.0"
    assert values["rbac"]["serviceAccount"]["name"] == "cluster-autoscaler"
    assert values["extraArgs"]["scale-down-unneeded-time"] == "10m"
    assert check(result.resources) == []


def test_policy_fails_gpu_groups_nobody_scales(run, tags) -> None:
    result = run(_program(tags, with_autoscaler=False))
    violations = gpu_node_autoscaling(result.resources)
    assert sorted(v.resource_name for v in violations) == ["plinth-gpu-h100", "plinth-gpu-l4"]
    assert all("no cluster-autoscaler" in v.message for v in violations)


def _res(type_: str, name: str, inputs: dict[str, Any], **outputs: Any) -> RecordedResource:
    return RecordedResource(type_, name, inputs, f"{name}-id", {**inputs, **outputs})


def _gpu_group(min_size: int, max_size: int) -> RecordedResource:
    return _res(
        "aws:eks/nodeGroup:NodeGroup",
        "g",
        {
            "amiType": "AL2023_x86_64_NVIDIA",
            "instanceTypes": ["p5.48xlarge"],
            "scalingConfig": {"minSize": min_size, "maxSize": max_size},
        },
        resources=[{"autoscalingGroups": [{"name": "asg-g"}]}],
    )


def test_policy_fails_a_fixed_size_group_and_one_without_templates(run, tags) -> None:
    good = run(_program(tags)).resources
    others = [r for r in good if r.type != "aws:eks/nodeGroup:NodeGroup"]
    fixed = gpu_node_autoscaling([*others, _gpu_group(2, 2)])
    assert any("cannot grow" in v.message for v in fixed), fixed
    assert any("node-template" in v.message for v in fixed), fixed


@pytest.mark.parametrize(
    ("autoscaling", "ok"),
    [
        (None, False),
        ({"totalMinNodeCount": 0, "totalMaxNodeCount": 0}, False),
        ({"minNodeCount": 2, "maxNodeCount": 2}, False),
        ({"totalMinNodeCount": 0, "totalMaxNodeCount": 4}, True),
        ({"minNodeCount": 0, "maxNodeCount": 1}, True),
    ],
)
def test_policy_on_gke_gpu_pools(autoscaling, ok) -> None:
    pool = _res(
        "gcp:container/nodePool:NodePool",
        "pool",
        {
            "nodeConfig": {"guestAccelerators": [{"type": "nvidia-l4", "count": 1}]},
            **({"autoscaling": autoscaling} if autoscaling else {}),
        },
    )
    assert (gpu_node_autoscaling([pool]) == []) is ok


def test_tag_scoped_star_resource_is_least_privilege_but_unscoped_is_not() -> None:
    def rule_of(statement: dict[str, Any]) -> list[policies.Violation]:
        doc = json.dumps({"Statement": [statement]})
        return policies.least_privilege_iam(
            [_res("aws:iam/rolePolicy:RolePolicy", "p", {"policy": doc})]
        )

    resize = {"Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": "*"}
    assert rule_of(resize)
    scoped = {
        **resize,
        "Condition": {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/x": "owned"}},
    }
    assert rule_of(scoped) == []
