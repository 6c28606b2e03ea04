"""/v1/clusters: the clusters placement spreads replicas over (thin routes over ClusterRegistry).

Operators manage records with an API key; a cluster's own agents (its gateway) report
heartbeats with the internal token, as they fetch the routing table.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from control_plane.api.auth import platform_of, require_api_key, require_api_key_or_internal_token
from control_plane.api.cluster_schemas import (
    CLUSTER_ID_PATTERN,
    ClusterCreateBody,
    ClusterListOut,
    ClusterOut,
    ClusterPatchBody,
    PlacementListOut,
    cluster_out,
)
from control_plane.api.schemas import error_responses
from control_plane.domain.cluster_admin import register_cluster, update_cluster
from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.placement_recorder import read_placements

router = APIRouter(
    prefix="/v1/clusters", tags=["clusters"], dependencies=[Depends(require_api_key)]
)
heartbeat_router = APIRouter(
    prefix="/v1/clusters",
    tags=["clusters"],
    dependencies=[Depends(require_api_key_or_internal_token)],
)
placements_router = APIRouter(
    prefix="/v1/placements", tags=["clusters"], dependencies=[Depends(require_api_key)]
)
ClusterIdPath = Annotated[
    str, Path(pattern=CLUSTER_ID_PATTERN, description="Cluster id (lowercase, digits, '-').")
]


def registry_of(request: Request) -> ClusterRegistry:
    return ClusterRegistry(platform_of(request).store)


@router.get("", response_model=ClusterListOut, responses=error_responses())
def list_clusters(request: Request) -> ClusterListOut:
    clusters = sorted(registry_of(request).list(), key=lambda cluster: cluster.id)
    return ClusterListOut(clusters=[cluster_out(cluster) for cluster in clusters])


@router.post(
    "",
    response_model=ClusterOut,
    status_code=201,
    responses=error_responses(400, 404, 409, 422),
)
def create_cluster(body: ClusterCreateBody, request: Request) -> ClusterOut:
    """Register a cluster. 404: its spill_over_to is not registered; 409: the id is taken,
    or spill_over_to names the cluster itself."""
    return cluster_out(register_cluster(registry_of(request), body.model_dump(mode="json")))


@router.get("/{cluster_id}", response_model=ClusterOut, responses=error_responses(404, 422))
def get_cluster(cluster_id: ClusterIdPath, request: Request) -> ClusterOut:
    return cluster_out(registry_of(request).get(cluster_id))


@router.patch(
    "/{cluster_id}", response_model=ClusterOut, responses=error_responses(400, 404, 409, 422)
)
def patch_cluster(
    cluster_id: ClusterIdPath, body: ClusterPatchBody, request: Request
) -> ClusterOut:
    """Change fields of a registered cluster (404: the cluster or its new spill_over_to is
    not registered; 409: spill_over_to names the cluster itself)."""
    return cluster_out(update_cluster(registry_of(request), cluster_id, body.changes()))


@router.delete("/{cluster_id}", status_code=204, responses=error_responses(404, 422))
def delete_cluster(cluster_id: ClusterIdPath, request: Request) -> Response:
    """Forget a cluster. Its replicas are not stopped here: drain it first."""
    registry_of(request).remove(cluster_id)
    return Response(status_code=204)


@router.post("/{cluster_id}/cordon", response_model=ClusterOut, responses=error_responses(404, 422))
def cordon_cluster(cluster_id: ClusterIdPath, request: Request) -> ClusterOut:
    """No new replicas go there; running ones stay (a draining cluster stops draining)."""
    return cluster_out(registry_of(request).set_cordon(cluster_id, cordoned=True))


@router.post(
    "/{cluster_id}/uncordon", response_model=ClusterOut, responses=error_responses(404, 422)
)
def uncordon_cluster(cluster_id: ClusterIdPath, request: Request) -> ClusterOut:
    """Clear cordon and drain: the cluster takes replicas again."""
    return cluster_out(registry_of(request).set_cordon(cluster_id, cordoned=False))


@router.post("/{cluster_id}/drain", response_model=ClusterOut, responses=error_responses(404, 422))
def drain_cluster(cluster_id: ClusterIdPath, request: Request) -> ClusterOut:
    """Cordon and move its replicas elsewhere (each stops once its replacement is ready)."""
    return cluster_out(registry_of(request).set_cordon(cluster_id, cordoned=True, draining=True))


@heartbeat_router.post(
    "/{cluster_id}/heartbeat", response_model=ClusterOut, responses=error_responses(404, 422)
)
def cluster_heartbeat(cluster_id: ClusterIdPath, request: Request) -> ClusterOut:
    """The cluster is alive (internal token or API key). Placement marks a cluster whose
    heartbeat is older than its timeout unhealthy."""
    platform = platform_of(request)
    return cluster_out(registry_of(request).heartbeat(cluster_id, platform.clock()))


@placements_router.get("", response_model=PlacementListOut, responses=error_responses())
def list_placements(request: Request) -> PlacementListOut:
    """Where the placement policy last put each deployment's replicas and why any are
    missing, and the clusters' health changes. Recorded by the reconciler; the platform's
    one driver still runs every replica."""
    placements, health = read_placements(platform_of(request).store)
    return PlacementListOut.model_validate({"placements": placements, "cluster_health": health})
