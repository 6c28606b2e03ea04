"""EksCluster under Pulumi mocks: cluster settings, GPU node groups, launch templates."""

from __future__ import annotations

import json

import pytest

from infra.eks import EksCluster, EksClusterArgs, GpuNodeGroupSpec
from infra.exceptions import InfraConfigError
from infra.gpu_catalog import AWS_GPU_INSTANCES
from infra.policies import check

SUBNETS = ["subnet-a", "subnet-b", "subnet-c"]


def _cluster(tags, **overrides):
    args = {
        "tags": tags,
        "kubernetes_version": "1.33",
        "vpc_id": "vpc-1",
        "private_subnet_ids": SUBNETS,
        "gpu_node_groups": (
            GpuNodeGroupSpec("h100", "p5.48xlarge", max_size=4),
            GpuNodeGroupSpec(
                "h200",
                "p5e.48xlarge",
                max_size=2,
                capacity="capacity-block",
                capacity_reservation_id="cr-1",
            ),
            GpuNodeGroupSpec("l4", "g6.xlarge", max_size=8),
        ),
        "admin_principal_arns": ("arn:aws:iam::111122223333:role/admins",),
    }
    args.update(overrides)
    return lambda: {"kubeconfig": EksCluster("plinth", EksClusterArgs(**args)).kubeconfig}


def test_cluster_is_private_encrypted_and_uses_access_entries(run, tags) -> None:
    result = run(_cluster(tags))
    cluster = result.one("aws:eks/cluster:Cluster", "plinth-cluster").inputs
    assert cluster["version"] == "1.33"
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    (key,) = result.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"] == key.outputs["arn"]
    (entry,) = result.of_type("aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == "arn:aws:iam::111122223333:role/admins"
    (association,) = result.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert association.inputs["policyArn"].endswith("AmazonEKSClusterAdminPolicy")


def test_gpu_node_groups_ami_taint_labels_and_scale_from_zero(run, tags) -> None:
    result = run(_cluster(tags))
    h100 = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-gpu-h100").inputs
    assert h100["amiType"] == "AL2023_x86_64_NVIDIA"
    assert h100["instanceTypes"] == ["p5.48xlarge"]
    assert h100["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert h100["scalingConfig"]["minSize"] == 0
    assert h100["labels"]["plinth.dev/gpu"] == "H100"
    assert h100["labels"]["plinth.dev/gpu-count"] == "8"
    assert h100["subnetIds"] == ["subnet-a"]  # EFA: one AZ
    assert h100["capacityType"] == "ON_DEMAND"
    l4 = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-gpu-l4").inputs
    assert l4["subnetIds"] == SUBNETS  # no EFA: spread over every AZ
    system = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-system").inputs
    assert "taints" not in system and system["amiType"] == "AL2023_x86_64_STANDARD"


def test_launch_templates_require_imdsv2_and_attach_efa_per_network_card(run, tags) -> None:
    result = run(_cluster(tags))
    for template in result.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        options = template.inputs["metadataOptions"]
        assert options["httpTokens"] == "required"
        assert options["httpPutResponseHopLimit"] == 2
    h100 = result.one("aws:ec2/launchTemplate:LaunchTemplate", "plinth-h100").inputs
    interfaces = h100["networkInterfaces"]
    assert len(interfaces) == AWS_GPU_INSTANCES["p5.48xlarge"].efa_interfaces == 32
    assert {i["interfaceType"] for i in interfaces} == {"efa"}
    assert sorted(i["networkCardIndex"] for i in interfaces) == list(range(32))
    assert [i["deviceIndex"] for i in interfaces][:2] == [0, 1]
    l4 = result.one("aws:ec2/launchTemplate:LaunchTemplate", "plinth-l4").inputs
    assert "networkInterfaces" not in l4
    group = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-gpu-h100").inputs
    assert (
        group["launchTemplate"]["id"]
        == result.one("aws:ec2/launchTemplate:LaunchTemplate", "plinth-h100").id
    )


def test_capacity_block_group(run, tags) -> None:
    result = run(_cluster(tags))
    group = result.one("aws:eks/nodeGroup:NodeGroup", "plinth-gpu-h200").inputs
    assert group["capacityType"] == "CAPACITY_BLOCK"
    template = result.one("aws:ec2/launchTemplate:LaunchTemplate", "plinth-h200").inputs
    assert template["instanceMarketOptions"] == {"marketType": "capacity-block"}
    target = template["capacityReservationSpecification"]["capacityReservationTarget"]
    assert target == {"capacityReservationId": "cr-1"}


def test_roles_have_the_managed_policies_and_policies_pass(run, tags) -> None:
    result = run(_cluster(tags))
    attached = {
        a.inputs["policyArn"].rsplit("/", 1)[-1]
        for a in result.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert {
        "AmazonEKSClusterPolicy",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryReadOnly",
        "AmazonEKS_CNI_Policy",
    } <= attached
    node_role = result.one("aws:iam/role:Role", "plinth-nodes").inputs
    trust = json.loads(node_role["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": ["ec2.amazonaws.com"]}
    # The cluster-autoscaler chart comes with the platform (test_infra_node_autoscaling).
    violations = check(result.resources)
    assert {v.rule for v in violations} == {"gpu-node-autoscaling"}, violations
    assert all("no cluster-autoscaler" in v.message for v in violations)


def test_kubeconfig_uses_exec_auth(run, tags) -> None:
    result = run(_cluster(tags))
    kubeconfig = json.loads(result.outputs["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")
    assert kubeconfig["users"][0]["user"]["exec"]["args"][:2] == ["eks", "get-token"]


@pytest.mark.parametrize(
    ("spec_kwargs", "field"),
    [
        ({"instance_type": "p9.mega"}, "gpu_node_groups[x].instance_type"),
        ({"capacity": "capacity-block"}, "gpu_node_groups[x].capacity_reservation_id"),
        ({"min_size": 3, "max_size": 2}, "gpu_node_groups[x].max_size"),
        ({"max_size": 0}, "gpu_node_groups[x].max_size"),
    ],
)
def test_bad_gpu_group_specs_name_the_field(spec_kwargs, field) -> None:
    kwargs = {"name": "x", "instance_type": "p5.48xlarge", "max_size": 2, **spec_kwargs}
    with pytest.raises(InfraConfigError) as excinfo:
        GpuNodeGroupSpec(**kwargs)
    assert excinfo.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kubernetes_version": "latest"}, "kubernetes_version"),
        ({"endpoint_public_access": True}, "public_access_cidrs"),
        ({"gpu_node_groups": (GpuNodeGroupSpec("a", "g6.xlarge", 1),) * 2}, "gpu_node_groups"),
    ],
)
def test_bad_cluster_args_name_the_field(tags, overrides, field) -> None:
    kwargs = {
        "tags": tags,
        "kubernetes_version": "1.33",
        "vpc_id": "v",
        "private_subnet_ids": SUBNETS,
    }
    with pytest.raises(InfraConfigError) as excinfo:
        EksClusterArgs(**{**kwargs, **overrides})
    assert excinfo.value.field == field


def test_every_child_is_parented_to_the_component(run, tags) -> None:
    result = run(_cluster(tags))
    component = [u for u in result.urns if u.endswith("plinth:eks:EksCluster::plinth")]
    assert len(component) == 1
    resource_urns = [u for u in result.urns if u not in component]
    assert len(resource_urns) + 1 == len(result.resources) > 20  # + the component
    # A child's URN type is "<parent type>$<own type>".
    assert all("::plinth:eks:EksCluster$" in u for u in resource_urns), resource_urns
