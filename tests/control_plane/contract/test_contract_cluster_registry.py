"""Cluster records through the MetadataStore port: SQLite and DynamoDB (moto) alike."""

from __future__ import annotations

import threading

import pytest

from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import (
    Cluster,
    ClusterKind,
    DriverKind,
    DriverSettings,
    GeoPoint,
)
from control_plane.domain.placement import (
    ClusterObservation,
    DeploymentDemand,
    PlacementObservation,
    PlacementPolicy,
    PlacementState,
)
from control_plane.exceptions import Conflict, NotFound
from control_plane.ports.store import MetadataStore


def _customer() -> Cluster:
    return Cluster(
        id="acme-dc1",
        cloud="customer",
        region="eu-central",
        location=GeoPoint(50.1, 8.7),
        kind=ClusterKind.SELF_HOSTED,
        capacity={"H100": 16},
        priority=0,
        max_gpus=8,
        spill_over_to="aws-eu-west",
        labels={"residency": "eu"},
        gateway_url="https://gw.acme.example",
        driver=DriverSettings(
            kind=DriverKind.KUBERNETES_ASSUMED_ROLE,
            endpoint="https://k8s.acme.example",
            role_arn="arn:aws:iam::123456789012:role/plinth-access",
            external_id_secret_arn="arn:aws:secretsmanager:eu-west-1:1:secret:x",
        ),
    )


def _cloud() -> Cluster:
    return Cluster(
        id="aws-eu-west",
        cloud="aws",
        region="eu-west",
        location=GeoPoint(51.5, -0.1),
        capacity={"H100": 64},
        labels={"residency": "eu"},
    )


def test_register_get_list_remove(metadata_store: MetadataStore) -> None:
    registry = ClusterRegistry(metadata_store)
    registry.register(_customer())
    registry.register(_cloud())
    assert registry.get("acme-dc1") == _customer()
    assert [c.id for c in registry.list()] == ["acme-dc1", "aws-eu-west"]
    with pytest.raises(Conflict, match="'acme-dc1' is already registered"):
        registry.register(_customer())
    registry.remove("acme-dc1")
    with pytest.raises(NotFound, match="cluster 'acme-dc1' not found"):
        registry.get("acme-dc1")
    with pytest.raises(NotFound, match="'acme-dc1'"):
        registry.heartbeat("acme-dc1", 1.0)


def test_racing_heartbeats_and_cordon_lose_no_update(metadata_store: MetadataStore) -> None:
    registry = ClusterRegistry(metadata_store)
    registry.register(_cloud())
    beats = 15

    def heartbeat() -> None:
        for now in range(1, beats + 1):
            registry.heartbeat("aws-eu-west", float(now))

    def operator() -> None:
        registry.set_cordon("aws-eu-west", cordoned=True)
        registry.record_error("aws-eu-west", "quota exceeded", 0.5)

    threads = [threading.Thread(target=heartbeat), threading.Thread(target=operator)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    health = registry.get("aws-eu-west").health
    assert health.last_heartbeat == float(beats)
    assert health.cordoned and not health.draining
    assert (health.last_error, health.last_error_at) == ("quota exceeded", 0.5)


def test_placement_reads_the_stored_records(metadata_store: MetadataStore) -> None:
    registry = ClusterRegistry(metadata_store)
    registry.register(_customer())
    registry.register(_cloud())
    for cluster_id in ("acme-dc1", "aws-eu-west"):
        registry.heartbeat(cluster_id, 100.0)
    registry.set_cordon("acme-dc1", cordoned=True, draining=True)
    observation = PlacementObservation(
        tuple(ClusterObservation(c) for c in registry.list()),
        (DeploymentDemand("m1", "d1", 3, "H100", 2),),
    )
    _, state = PlacementPolicy().decide(PlacementState(), observation, 110.0)
    # The self-hosted cluster would come first, but it is draining.
    assert dict(state.deployments["m1/d1"].applied) == {"aws-eu-west": 3}
