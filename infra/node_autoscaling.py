"""Node autoscaling for EKS GPU node groups: the Kubernetes cluster-autoscaler.

Why the cluster-autoscaler and not Karpenter: the GPU node groups are EKS managed node
groups with launch templates that attach EFA interfaces and target capacity blocks /
reservations; the cluster-autoscaler scales exactly those groups between their
min and max (Pulumi owns the bounds, the autoscaler the live size), so pending GPU pods
get nodes and idle GPU nodes are removed after ``scale-down-unneeded-time``.

Pieces, all declared by the components:
- ``node_template_tags`` on each GPU group's Auto Scaling group: the labels, taints and
  GPU count a node *would* have, which the autoscaler needs to scale a group up from 0.
  (EKS itself tags the group ``k8s.io/cluster-autoscaler/enabled`` and ``.../<cluster>``.)
- ``cluster_autoscaler_statements``: the autoscaler's IAM policy (EKS Pod Identity),
  where changing a group's size is limited to groups tagged as owned by this cluster.
- ``cluster_autoscaler_release``: the Helm chart, installed by ``infra.platform`` with the
  service account name the Pod Identity association binds.
GKE pools autoscale natively (``infra.gke``: total min/max per pool).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.iam import Statement
from plinth.accelerators import GPU_RESOURCE, Taint

CLUSTER_AUTOSCALER_NAMESPACE = "kube-system"
CLUSTER_AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
CLUSTER_AUTOSCALER_CHART = "cluster-autoscaler"
CLUSTER_AUTOSCALER_REPO = "https://kubernetes.github.io/autoscaler"
CLUSTER_AUTOSCALER_CHART_VERSION = "9.46.6"
NODE_TEMPLATE_TAG_PREFIX = "k8s.io/cluster-autoscaler/node-template/"
# Read-only calls AWS authorises only on Resource "*".
AUTOSCALER_DESCRIBE_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
)
AUTOSCALER_WRITE_ACTIONS = (
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
)


def owner_tag_key(cluster_name: str) -> str:
    """The tag EKS puts on the Auto Scaling groups of a cluster's managed node groups."""
    return f"k8s.io/cluster-autoscaler/{cluster_name}"


def node_template_tags(
    labels: Mapping[str, str], taints: Sequence[Taint], gpus: int
) -> dict[str, str]:
    """Auto Scaling group tags describing a node of the group before one exists."""
    tags = {f"{NODE_TEMPLATE_TAG_PREFIX}label/{k}": v for k, v in labels.items()}
    tags.update(
        {f"{NODE_TEMPLATE_TAG_PREFIX}taint/{t.key}": f"{t.value}:{t.effect}" for t in taints}
    )
    tags[f"{NODE_TEMPLATE_TAG_PREFIX}resources/{GPU_RESOURCE}"] = str(gpus)
    return tags


def cluster_autoscaler_statements(
    cluster_name: str, nodegroup_arns: pulumi.Input[str]
) -> list[Statement]:
    """What the autoscaler calls: describe everything, resize only this cluster's groups."""
    return [
        Statement(AUTOSCALER_DESCRIBE_ACTIONS, ["*"], sid="Describe"),
        Statement(
            AUTOSCALER_WRITE_ACTIONS,
            ["*"],
            sid="ResizeOwnGroups",
            condition={"StringEquals": {f"aws:ResourceTag/{owner_tag_key(cluster_name)}": "owned"}},
        ),
        Statement(("eks:DescribeNodegroup",), [nodegroup_arns], sid="ReadNodegroups"),
    ]


@dataclass(frozen=True)
class ClusterAutoscalerChart:
    """The cluster-autoscaler Helm release for one EKS cluster."""

    cluster_name: pulumi.Input[str]
    region: str
    kubernetes_version: str  # MAJOR.MINOR: the autoscaler's minor must match the cluster's
    chart_version: str = CLUSTER_AUTOSCALER_CHART_VERSION
    scale_down_unneeded: str = "10m"  # idle GPU nodes go away after this long


def cluster_autoscaler_release(
    name: str, chart: ClusterAutoscalerChart, opts: pulumi.ResourceOptions
) -> k8s.helm.v3.Release:
    values = {
        "cloudProvider": "aws",
        "awsRegion": chart.region,
        "autoDiscovery": {"clusterName": chart.cluster_name},
        "image": {"tag": f"v{chart.kubernetes_version}.0"},
        "rbac": {"serviceAccount": {"create": True, "name": CLUSTER_AUTOSCALER_SERVICE_ACCOUNT}},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"plinth.dev/pool": "system"},
        "extraArgs": {
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            "scale-down-unneeded-time": chart.scale_down_unneeded,
            "skip-nodes-with-local-storage": False,
        },
    }
    return k8s.helm.v3.Release(
        f"{name}-cluster-autoscaler",
        k8s.helm.v3.ReleaseArgs(
            chart=CLUSTER_AUTOSCALER_CHART,
            version=chart.chart_version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CLUSTER_AUTOSCALER_REPO),
            namespace=CLUSTER_AUTOSCALER_NAMESPACE,
            values=values,
        ),
        opts=opts,
    )
