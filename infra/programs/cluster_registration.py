"""Cluster records the stacks write into the control plane's metadata table.

Each region stack registers its own cluster, and the hybrid stack the customer's, in the
shape of ``Cluster.to_dict()``: the record ``ClusterRegistry``, ``/v1/clusters`` and
placement read. The record goes through :class:`Cluster` before it is written, so a stack
cannot register what the control plane would refuse to read. It is written as a DynamoDB
item in the metadata store's layout (``tbl``, ``key``, ``version``, ``value``) at version 1;
after that the control plane owns it (heartbeats, cordons), and Pulumi ignores its drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
from pydantic import Field

from control_plane.domain.cluster_registry import CLUSTERS
from control_plane.domain.clusters import Cluster, ClusterKind, DriverKind, DriverSettings, GeoPoint
from infra.exceptions import InfraConfigError
from infra.gpu_catalog import aws_gpu_instance, gcp_gpu_machine
from infra.programs.config import StackConfig

# Where each cloud region is (its datacenters' metro, to a degree or so): the default
# location of a cluster, for nearest-cluster routing and the added-latency estimate.
REGION_LOCATIONS: dict[str, tuple[float, float]] = {
    # AWS
    "us-east-1": (38.9, -77.4),
    "us-east-2": (40.0, -83.0),
    "us-west-1": (37.4, -122.0),
    "us-west-2": (45.8, -119.7),
    "ca-central-1": (45.5, -73.6),
    "sa-east-1": (-23.5, -46.6),
    "eu-west-1": (53.3, -6.3),
    "eu-west-2": (51.5, -0.1),
    "eu-west-3": (48.9, 2.4),
    "eu-central-1": (50.1, 8.7),
    "eu-north-1": (59.3, 18.1),
    "ap-south-1": (19.1, 72.9),
    "ap-northeast-1": (35.7, 139.7),
    "ap-southeast-1": (1.35, 103.8),
    "ap-southeast-2": (-33.9, 151.2),
    # GCP
    "us-central1": (41.3, -95.9),
    "us-east1": (33.2, -80.0),
    "us-east4": (39.0, -77.5),
    "us-west1": (45.6, -121.2),
    "us-west4": (36.2, -115.1),
    "europe-west1": (50.4, 3.8),
    "europe-west2": (51.5, -0.1),
    "europe-west3": (50.1, 8.7),
    "europe-west4": (53.4, 6.8),
    "asia-northeast1": (35.7, 139.7),
    "asia-southeast1": (1.35, 103.8),
}


class LocationConfig(StackConfig):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class ClusterRegistrationConfig(StackConfig):
    """``clusterRegistration``: how the region's cluster is registered (all optional)."""

    id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="Default: clusterName"
    )
    priority: int = Field(default=100, ge=0, description="Lower is preferred")
    gpu_hour_cost: float = Field(default=0.0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict, description="e.g. residency: eu")
    location: LocationConfig | None = Field(default=None, description="Default: the region's")


def location_of(region: str, override: LocationConfig | None, field: str) -> GeoPoint:
    if override is not None:
        return GeoPoint(override.latitude, override.longitude)
    try:
        return GeoPoint(*REGION_LOCATIONS[region])
    except KeyError:
        raise InfraConfigError(
            field, f"no known location for region {region!r}: set its latitude and longitude"
        ) from None


def aws_capacity(groups: Iterable[tuple[str, int]], field: str) -> dict[str, int]:
    """GPUs by accelerator over EKS node groups given as (instance type, max size)."""
    capacity: dict[str, int] = {}
    for index, (instance_type, max_size) in enumerate(groups):
        instance = aws_gpu_instance(instance_type, f"{field}[{index}].instanceType")
        capacity[instance.accelerator] = (
            capacity.get(instance.accelerator, 0) + instance.gpus * max_size
        )
    return capacity


def gcp_capacity(pools: Iterable[tuple[str, int]], field: str) -> dict[str, int]:
    """GPUs by accelerator over GKE node pools given as (machine type, total max nodes)."""
    capacity: dict[str, int] = {}
    for index, (machine_type, max_nodes) in enumerate(pools):
        machine = gcp_gpu_machine(machine_type, f"{field}[{index}].machineType")
        capacity[machine.accelerator] = (
            capacity.get(machine.accelerator, 0) + machine.gpus * max_nodes
        )
    return capacity


def registration_item(record: Mapping[str, Any]) -> str:
    """A cluster record as the DynamoDB metadata store keeps it (version 1)."""
    return json.dumps(
        {
            "tbl": {"S": CLUSTERS},
            "key": {"S": str(record["id"])},
            "version": {"N": "1"},
            "value": {"S": json.dumps(dict(record), sort_keys=True)},
        }
    )


def register_cluster(
    cluster_id: str,
    table_name: pulumi.Input[str],
    record: pulumi.Output[dict[str, Any]],
    opts: pulumi.ResourceOptions | None = None,
) -> aws.dynamodb.TableItem:
    """Write the record once; the control plane owns it afterwards (heartbeats change it)."""
    options = pulumi.ResourceOptions.merge(
        pulumi.ResourceOptions(ignore_changes=["item"]), opts or pulumi.ResourceOptions()
    )
    return aws.dynamodb.TableItem(
        f"cluster-{cluster_id}",
        table_name=table_name,
        hash_key="tbl",
        range_key="key",
        item=record.apply(registration_item),
        opts=options,
    )


def cloud_cluster_record(
    *,
    cloud: str,
    region: str,
    cluster_id: str,
    capacity: Mapping[str, int],
    registration: ClusterRegistrationConfig,
    where: str,
) -> Callable[[str, str], dict[str, Any]]:
    """A function of (API endpoint, namespace) giving a Plinth-run cluster's record; the
    location is looked up now, so a region without one fails the run before anything."""
    location = location_of(region, registration.location, f"{where}:clusterRegistration.location")

    def record(endpoint: str, namespace: str) -> dict[str, Any]:
        cluster = Cluster(
            id=cluster_id,
            cloud=cloud,
            region=region,
            location=location,
            kind=ClusterKind.CLOUD,
            capacity=dict(capacity),
            priority=registration.priority,
            gpu_hour_cost=registration.gpu_hour_cost,
            labels=dict(registration.labels),
            driver=DriverSettings(DriverKind.KUBERNETES, namespace=namespace, endpoint=endpoint),
        )
        return cluster.to_dict()

    return record
