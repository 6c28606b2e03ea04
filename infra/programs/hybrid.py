"""``stacks/hybrid``: register a customer (self-hosted) cluster and a spill-over target.

Run in the control plane's account. It reads the control plane stack (metadata table,
reconciler role) and a Plinth-run region stack (the spill-over cluster) through
``StackReference``s, lets the reconciler role assume the customer's access role (the one
``stacks/self-hosted`` created), and writes both cluster registrations into the control
plane's metadata table, where placement reads them: the customer cluster first, the
spill-over target when it is full.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
from pydantic import Field

from infra.iam import Statement, policy_json
from infra.programs.common import export_all, required_output, standard_tags
from infra.programs.config import StackConfig, aws_region

CLUSTERS_TABLE = "clusters"  # the metadata store's logical table of registered clusters


class CustomerClusterConfig(StackConfig):
    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    cluster_arn: str = Field(pattern=r"^arn:aws:eks:[a-z0-9-]+:\d{12}:cluster/.+$")
    access_role_arn: str = Field(pattern=r"^arn:aws:iam::\d{12}:role/.+$")
    external_id: str = Field(min_length=16)
    region: str
    max_gpus: int = Field(default=8, ge=0)


class SpillOverConfig(StackConfig):
    name: str = Field(pattern=r"^[a-z0-9-]{1,40}$")
    stack: str = Field(description="Region stack (org/aws-region/<stack>) to spill over to")
    kind: Literal["eks", "gke"] = "eks"
    region: str


class HybridConfig(StackConfig):
    region: str = Field(description="From aws:region (the control plane's region)")
    control_plane_stack: str
    customer_cluster: CustomerClusterConfig
    spill_over: SpillOverConfig


def registration_item(name: str, record: dict[str, Any]) -> str:
    """A cluster record in the metadata table's item shape (tbl, key, version, value JSON)."""
    return json.dumps(
        {
            "tbl": {"S": CLUSTERS_TABLE},
            "key": {"S": name},
            "version": {"N": "1"},
            "value": {"S": json.dumps(record, sort_keys=True)},
        }
    )


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


def customer_record(config: HybridConfig, external_id_secret_arn: str) -> dict[str, Any]:
    customer = config.customer_cluster
    return {
        "name": customer.name,
        "kind": "eks",
        "region": customer.region,
        "cluster_arn": customer.cluster_arn,
        "role_arn": customer.access_role_arn,
        "external_id_secret_arn": external_id_secret_arn,
        "priority": 0,
        "max_gpus": customer.max_gpus,
        "spill_over_to": config.spill_over.name,
    }


def spill_over_record(config: HybridConfig, cluster_name: str, endpoint: str) -> dict[str, Any]:
    spill = config.spill_over
    return {
        "name": spill.name,
        "kind": spill.kind,
        "region": spill.region,
        "cluster_name": cluster_name,
        "endpoint": endpoint,
        "priority": 100,
        "spill_over": True,
    }


def register(name: str, table_name: pulumi.Input[str], item: pulumi.Input[str]) -> None:
    aws.dynamodb.TableItem(
        f"cluster-{name}", table_name=table_name, hash_key="tbl", range_key="key", item=item
    )


def build(config: HybridConfig) -> dict[str, Any]:
    control_plane = pulumi.StackReference(config.control_plane_stack)
    spill_stack = pulumi.StackReference(config.spill_over.stack)
    table_name = required_output(control_plane, "metadataTableName")
    external_id = grant_customer_access(config, required_output(control_plane, "reconcilerRoleArn"))
    customer, spill = config.customer_cluster.name, config.spill_over.name
    register(
        customer,
        table_name,
        external_id.arn.apply(
            lambda arn: registration_item(customer, customer_record(config, arn))
        ),
    )
    spill_cluster = pulumi.Output.all(
        required_output(spill_stack, "clusterName"), required_output(spill_stack, "clusterEndpoint")
    )
    register(
        spill,
        table_name,
        spill_cluster.apply(
            lambda v: registration_item(spill, spill_over_record(config, v[0], v[1]))
        ),
    )
    return {"registeredClusters": [customer, spill], "metadataTableName": table_name}


def program(stack_dir: Path) -> dict[str, Any]:
    """Read the stack config and build (what ``pulumi up`` runs)."""
    del stack_dir  # paths in this stack's config are not relative to it
    return build(HybridConfig.from_pulumi(region=aws_region()))


def main(stack_dir: Path) -> None:
    export_all(program(stack_dir))
