"""Which cluster serves a request (multi-cluster): nearest healthy allowed one with a ready
replica, forwarded at most max_hops times and never back, residency never left."""

from __future__ import annotations

import pytest

from gpu_nodes.gateway.exceptions import NoClusterAvailableError
from gpu_nodes.gateway.global_routing import (
    HERE,
    Forward,
    Hop,
    choose_cluster,
    ready_elsewhere,
)
from plinth.contracts.routing import ClusterRoute, DeploymentRoute, ReplicaRoute, RoutingTable

CLUSTERS = {
    "lon": ClusterRoute(region="eu-west", latitude=51.5, longitude=-0.1, residency="eu"),
    "fra": ClusterRoute(region="eu-central", latitude=50.1, longitude=8.7, residency="eu"),
    "iad": ClusterRoute(region="us-east", latitude=38.9, longitude=-77.0, residency="us"),
    "pdx": ClusterRoute(region="us-west", latitude=45.5, longitude=-122.7, residency="us"),
}


def table(*down: str) -> RoutingTable:
    clusters = {
        cid: c.model_copy(update={"gateway_url": f"http://{cid}", "healthy": cid not in down})
        for cid, c in CLUSTERS.items()
    }
    return RoutingTable(clusters=clusters)


def deployment(
    ready_in: tuple[str, ...], starting_in: tuple[str, ...] = (), **kw: object
) -> DeploymentRoute:
    replicas = [
        ReplicaRoute(id=f"r-{c}", url=f"http://{c}-r", ready=True, cluster=c) for c in ready_in
    ]
    replicas += [ReplicaRoute(id=f"s-{c}", url=f"http://{c}-s", cluster=c) for c in starting_in]
    return DeploymentRoute(replicas=replicas, **kw)  # type: ignore[arg-type]


def choose(
    own: str, dep: DeploymentRoute, hop: Hop = Hop(), *down: str, avoid: tuple[str, ...] = ()
) -> object:
    return choose_cluster(table(*down), own, dep, hop, max_hops=2, avoid=avoid)


@pytest.mark.parametrize(
    ("own", "ready_in", "hop", "down", "expected"),
    [
        # A replica here and the client here: served here.
        ("lon", ("lon", "iad"), Hop(), (), "here"),
        # None here: the nearest cluster that has one (Frankfurt, not Virginia).
        ("lon", ("fra", "iad"), Hop(), (), "fra"),
        # The edge says the client is in us-west: Oregon serves it, not London.
        ("lon", ("lon", "pdx"), Hop(origin_region="us-west"), (), "pdx"),
        # The nearest is unhealthy: the next nearest.
        ("lon", ("fra", "iad"), Hop(), ("fra",), "iad"),
        # Already passed Frankfurt: never back there.
        ("iad", ("fra",), Hop(via=("fra",)), (), "here"),
        # Forwarded twice already (max_hops 2): served or parked here.
        ("pdx", ("lon",), Hop(via=("fra", "iad")), (), "here"),
        # Every replica cold: park here while it wakes.
        ("lon", (), Hop(), (), "here"),
    ],
)
def test_nearest_ready_cluster(
    own: str, ready_in: tuple[str, ...], hop: Hop, down: tuple[str, ...], expected: str
) -> None:
    choice = choose(own, deployment(ready_in), hop, *down)
    if expected == "here":
        assert choice == HERE
    else:
        assert choice == Forward(expected, f"http://{expected}")


def test_a_refused_cluster_is_avoided() -> None:
    assert choose("lon", deployment(("fra", "iad")), Hop(), avoid=("fra",)) == Forward(
        "iad", "http://iad"
    )


def test_residency_keeps_requests_in_their_geography() -> None:
    dep = deployment(("fra", "iad"), residency="eu")
    # From the US the request goes to the EU replica, never to the US one.
    assert choose("iad", dep) == Forward("fra", "http://fra")
    # EU clusters down: a 503 that says why, never a US replica.
    dep = deployment(
        ("iad",), residency="eu", unavailable_reason="every cluster with residency eu is unhealthy"
    )
    with pytest.raises(NoClusterAvailableError) as caught:
        choose("iad", dep, Hop(), "lon", "fra")
    assert caught.value.status_code == 503
    assert "residency eu" in caught.value.message
    assert "every cluster with residency eu is unhealthy" in caught.value.message


def test_a_cold_locked_deployment_parks_in_its_geography() -> None:
    dep = deployment((), starting_in=("lon",), residency="eu")
    assert choose("pdx", dep) == Forward("lon", "http://lon")  # nearest EU cluster, from Oregon


def test_region_lock() -> None:
    dep = deployment(("lon", "fra"), regions=["eu-central"])
    assert choose("lon", dep) == Forward("fra", "http://fra")


def test_single_cluster_tables_always_serve_here() -> None:
    assert choose_cluster(RoutingTable(), None, deployment(()), Hop(), max_hops=2) == HERE


def test_ready_elsewhere_ends_parking() -> None:
    cold = deployment((), starting_in=("lon",))
    assert not ready_elsewhere(table(), "lon", cold)
    warm_abroad = deployment(("iad",))
    assert ready_elsewhere(table(), "lon", warm_abroad)
    assert not ready_elsewhere(table("iad"), "lon", warm_abroad)  # unhealthy
    assert not ready_elsewhere(table(), "lon", warm_abroad, avoid=("iad",))
    locked = deployment(("iad",), residency="eu")
    assert not ready_elsewhere(table(), "lon", locked)
