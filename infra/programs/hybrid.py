"""``stacks/hybrid``: register a customer (self-hosted) cluster that spills over to a
Plinth-run region.

Run in the control plane's account. It reads the control plane stack (metadata table,
reconciler role) and a Plinth-run region stack (the spill-over cluster, which registers
itself) through ``StackReference``s, lets the reconciler role assume the customer's access
role (the one ``stacks/self-hosted`` created), and writes the customer cluster's record
(``Cluster.to_dict()``) into the control plane's metadata table, where placement reads it:
the customer cluster first, up to ``maxGpus``, then the spill-over target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from control_plane.domain.clusters import Cluster, ClusterKind, DriverKind, DriverSettings
from infra.iam import Statement, policy_json
from infra.programs.cluster_registration import LocationConfig, location_of, register_cluster
from infra.programs.common import export_all, required_output, standard_tags
from infra.programs.config import StackConfig, aws_region

EKS_CLUSTER_ARN_LABEL = "eks-cluster-arn"


class CustomerClusterConfig(StackConfig):
    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    cluster_arn: str = Field(pattern=r"^arn:aws:eks:[a-z0-9-]+:\d{12}:cluster/.+$")
    endpoint: str = Field(pattern=r"^https://[!-~]+$", description="The EKS API server URL")
    access_role_arn: str = Field(pattern=r"^arn:aws:iam::\d{12}:role/.+$")
    external_id: str = Field(min_length=16)
    region: str
    capacity: dict[str, int] = Field(min_length=1, description="GPUs by accelerator type")
    max_gpus: int = Field(default=8, ge=0)
    priority: int = Field(default=0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict, description="e.g. residency: eu")
    location: LocationConfig | None = Field(default=None, description="Default: the region's")


class SpillOverConfig(StackConfig):
    stack: str = Field(
        description="Region stack (org/aws-region/<stack> or org/gcp-region/<stack>) whose "
        "registered cluster (its clusterId output) takes what does not fit"
    )


class HybridConfig(StackConfig):
    region: str = Field(description="From aws:region (the control plane's region)")
    control_plane_stack: str
    customer_cluster: CustomerClusterConfig
    spill_over: SpillOverConfig


def grant_customer_access(
    config: HybridConfig, reconciler_role_arn: pulumi.Output[str]
) -> aws.secretsmanager.Secret:
    """Store the external id and let the reconciler role assume the customer's role."""
    customer = config.customer_cluster
    # The external id is a credential: it goes to Secrets Manager, never into the table.
    external_id = aws.secretsmanager.Secret(
        f"{customer.name}-external-id",
        description=f"sts:ExternalId for assuming the {customer.name} access role",
        tags=standard_tags(config.region).aws("hybrid"),
    )
    aws.secretsmanager.SecretVersion(
        f"{customer.name}-external-id",
        secret_id=external_id.id,
        secret_string=pulumi.Output.secret(customer.external_id),
    )
    aws.iam.RolePolicy(
        f"{customer.name}-assume",
        role=reconciler_role_arn.apply(lambda arn: arn.rsplit("/", 1)[-1]),
        policy=policy_json(
            [
                Statement(("sts:AssumeRole",), [customer.access_role_arn]),
                Statement(("secretsmanager:GetSecretValue",), [external_id.arn]),
            ]
        ),
    )
    return external_id


def customer_record(
    config: HybridConfig, external_id_secret_arn: str, spill_over_id: str
) -> dict[str, Any]:
    """The customer's cluster as ``Cluster.to_dict()``: self-hosted, filled first up to
    ``maxGpus``, reached through its access role; the external id stays in the secret."""
    customer = config.customer_cluster
    location = location_of(customer.region, customer.location, "hybrid:customerCluster.location")
    cluster = Cluster(
        id=customer.name,
        cloud="aws",
        region=customer.region,
        location=location,
        kind=ClusterKind.SELF_HOSTED,
        capacity=dict(customer.capacity),
        priority=customer.priority,
        max_gpus=customer.max_gpus,
        spill_over_to=spill_over_id,
        # The EKS cluster's ARN names the cluster its API tokens are minted for.
        labels={**customer.labels, EKS_CLUSTER_ARN_LABEL: customer.cluster_arn},
        driver=DriverSettings(
            DriverKind.KUBERNETES_ASSUMED_ROLE,
            endpoint=customer.endpoint,
            role_arn=customer.access_role_arn,
            external_id_secret_arn=external_id_secret_arn,
        ),
    )
    return cluster.to_dict()


def build(config: HybridConfig) -> dict[str, Any]:
    control_plane = pulumi.StackReference(config.control_plane_stack)
    spill_stack = pulumi.StackReference(config.spill_over.stack)
    table_name = required_output(control_plane, "metadataTableName")
    external_id = grant_customer_access(config, required_output(control_plane, "reconcilerRoleArn"))
    customer = config.customer_cluster.name
    # Fail on a region without a known location now, not inside an apply.
    location_of(
        config.customer_cluster.region,
        config.customer_cluster.location,
        "hybrid:customerCluster.location",
    )
    # The spill-over target registers itself (its region stack); this names it.
    spill_over_id = required_output(spill_stack, "clusterId")
    record = pulumi.Output.all(external_id.arn, spill_over_id).apply(
        lambda v: customer_record(config, v[0], v[1])
    )
    register_cluster(customer, table_name, record)
    return {
        "registeredClusters": [customer],
        "spillOverClusterId": spill_over_id,
        "metadataTableName": table_name,
    }


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs)."""
    del stack_dir  # paths in this stack's config are not relative to it
    return build(HybridConfig.from_pulumi(region=aws_region()))


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
