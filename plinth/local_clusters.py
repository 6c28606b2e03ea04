"""`plinth up --clusters N`: N local clusters on one machine, each in its own simulated region.

Each cluster is a registered cluster record (driver ``local``: its replicas are processes of
the control plane, under ``<state dir>/clusters/<id>/``) with its own gateway on its own port,
which sends the cluster's heartbeats. The regions sit at real cities' coordinates, so the
distances between them (and so "nearest" and residency) are those of a real deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from plinth.exceptions import PlinthError

MAX_LOCAL_CLUSTERS = 6
# Local runs fail over fast: a cluster is unhealthy 5 s after its gateway's last heartbeat,
# and one back waits 10 s before it gets replicas again.
LOCAL_PLACEMENT_ENV = {
    "PLINTH_CLUSTER": "clusters",
    "PLINTH_PLACEMENT_HEARTBEAT_TIMEOUT_S": "5",
    "PLINTH_PLACEMENT_RECOVERY_HOLD_S": "10",
    "PLINTH_CLUSTER_CALL_TIMEOUT_S": "5",
}


@dataclass(frozen=True)
class LocalRegion:
    name: str
    latitude: float
    longitude: float
    residency: str

    @property
    def cluster_id(self) -> str:
        return f"local-{self.name}"


# In the order `--clusters N` takes them: Europe first, then two US regions, ...
REGIONS = (
    LocalRegion("eu-west", 51.51, -0.13, "eu"),  # London
    LocalRegion("us-east", 38.90, -77.04, "us"),  # Virginia
    LocalRegion("us-west", 45.52, -122.68, "us"),  # Oregon
    LocalRegion("eu-central", 50.11, 8.68, "eu"),  # Frankfurt
    LocalRegion("ap-south", 19.08, 72.88, "ap"),  # Mumbai
    LocalRegion("ap-northeast", 35.68, 139.69, "ap"),  # Tokyo
)
_BY_NAME = {region.name: region for region in REGIONS}


def parse_clusters(value: str) -> list[LocalRegion]:
    """``--clusters``: a count (the first N regions) or a comma-separated list of regions."""
    text = value.strip()
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= MAX_LOCAL_CLUSTERS:
            raise PlinthError(f"--clusters {count}: give 1 to {MAX_LOCAL_CLUSTERS} clusters")
        return list(REGIONS[:count])
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _BY_NAME]
    if not names or unknown:
        known = ", ".join(_BY_NAME)
        raise PlinthError(
            f"--clusters {value!r}: unknown region {', '.join(unknown) or '(none)'};"
            f" give a count or regions from: {known}"
        )
    if len(set(names)) != len(names):
        raise PlinthError(f"--clusters {value!r} names a region twice")
    return [_BY_NAME[name] for name in names]


def cluster_record(region: LocalRegion, gateway_url: str) -> dict[str, object]:
    """The body of ``POST /v1/clusters`` for one local cluster."""
    return {
        "id": region.cluster_id,
        "cloud": "local",
        "region": region.name,
        "location": {"latitude": region.latitude, "longitude": region.longitude},
        "capacity": {"cpu": 64},
        "labels": {"residency": region.residency},
        "gateway_url": gateway_url,
        "driver": {"kind": "local"},
    }


def register_clusters(cp_url: str, api_key: str, clusters: dict[LocalRegion, str]) -> None:
    """Register (or update) each cluster with its gateway URL and send a first heartbeat, so
    the placement counts it healthy from its first tick."""
    headers = {"Authorization": f"Api-Key {api_key}"}
    with httpx.Client(base_url=cp_url, headers=headers, timeout=10.0, trust_env=False) as client:
        for region, gateway_url in clusters.items():
            body = cluster_record(region, gateway_url)
            response = client.post("/v1/clusters", json=body)
            if response.status_code == 409:  # a state dir that ran before: same id, new URL
                patch = {k: v for k, v in body.items() if k != "id"}
                response = client.patch(f"/v1/clusters/{region.cluster_id}", json=patch)
            _check(response, f"registering cluster {region.cluster_id}")
            beat = client.post(f"/v1/clusters/{region.cluster_id}/heartbeat")
            _check(beat, f"the first heartbeat of cluster {region.cluster_id}")


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code >= 400:
        raise PlinthError(f"{what} failed: {response.status_code} {response.text[:300]}")
