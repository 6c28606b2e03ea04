"""`plinth up --clusters 3` end to end: active-active placement, failover under load while one
cluster's gateway and replicas are killed, and residency held while its only cluster is down.

Three local "regions" (London, Virginia, Oregon), each cluster with its own gateway and
replicas. The success rates are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from plinth.exceptions import PlinthError
from plinth.local import LocalPlatform, check_ports_free, start_platform
from plinth.local_clusters import parse_clusters
from tests.e2e.conftest import REPO_ROOT, Cli
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

CLUSTERS = 3
READY_TIMEOUT_S = 60.0
CLIENTS = 4
BEFORE_S = 2.0  # load before the kill
AFTER_S = 3.0  # load after the failover window
MAX_REQUESTS = 20_000  # bounds the loop; the pause below keeps a slow run well under it
PAUSE_S = 0.01  # between one client's requests: a steady load, not a flood


@dataclass
class Clusters:
    platform: LocalPlatform
    cli: Cli
    api: httpx.Client
    models: dict[str, str] = field(default_factory=dict)  # package name -> model id

    def routing(self) -> dict[str, Any]:
        token = self.platform.endpoints.internal_token
        url = f"{self.platform.endpoints.control_plane_url}/v1/routing"
        response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def ready_clusters(self, package: str) -> list[str]:
        """Clusters with a ready replica of the package's production deployment."""
        table = self.routing()
        model = table["models"][self.models[package]]
        deployment = model["deployments"][model["environments"]["production"]]
        return sorted({r["cluster"] for r in deployment["replicas"] if r["ready"]})

    def healthy(self) -> dict[str, bool]:
        return {cid: c["healthy"] for cid, c in self.routing()["clusters"].items()}

    def gateway_process(self, cluster_id: str) -> psutil.Process:
        ids = list(self.platform.clusters)
        procs = [self.platform.gateway, *self.platform.cluster_gateways]
        return psutil.Process(procs[ids.index(cluster_id)].pid)

    def predict_url(self, cluster_id: str, package: str) -> str:
        base = self.platform.clusters[cluster_id]
        return f"{base}/models/{self.models[package]}/production/predict"

    def kill_cluster(self, cluster_id: str) -> None:
        """SIGKILL the cluster's gateway (its heartbeats stop), then its replicas."""
        self.gateway_process(cluster_id).kill()
        replicas_dir = self.platform.state_dir / "clusters" / cluster_id / "replicas"
        for proc in psutil.Process(self.platform.control_plane.pid).children(recursive=True):
            try:
                if Path(proc.cwd()).is_relative_to(replicas_dir):
                    os.killpg(proc.pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError):
                continue


def wait_for(what: str, check: Any, timeout_s: float = READY_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def start_with_consecutive_gateway_ports(state_dir: Path) -> LocalPlatform:
    for _ in range(20):
        base = free_port()
        try:
            check_ports_free("127.0.0.1", {f"p{i}": base + i for i in range(CLUSTERS)})
        except PlinthError:
            continue
        return start_platform(state_dir, "127.0.0.1", free_port(), base, parse_clusters("3"))
    raise AssertionError("no three consecutive free ports")


def hello_package(root: Path, name: str, placement: str) -> Path:
    package = root / name
    shutil.copytree(REPO_ROOT / "examples" / "hello", package)
    config = package / "config.yaml"
    text = config.read_text().replace("model_name: hello", f"model_name: {name}")
    config.write_text(text + f"placement:\n{placement}")
    return package


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    platform = start_with_consecutive_gateway_ports(tmp_path_factory.mktemp("mcm-state"))
    headers = {"Authorization": f"Api-Key {platform.endpoints.api_key}"}
    try:
        with httpx.Client(
            base_url=platform.endpoints.control_plane_url, headers=headers, timeout=30
        ) as api:
            running = Clusters(platform, Cli(platform.state_dir), api)
            packages = tmp_path_factory.mktemp("mcm-packages")
            for name, placement in (
                ("spread", "  min_clusters: 2\n"),
                ("eu-only", "  residency: eu\n"),
            ):
                running.cli("push", str(hello_package(packages, name, placement)), "--promote")
                models = api.get("/v1/models").json()["models"]
                running.models[name] = next(m["id"] for m in models if m["name"] == name)
            yield running
    finally:
        platform.stop()


@dataclass
class Load:
    """Clients sending predicts through one gateway until stopped; each answer timed."""

    url: str
    headers: dict[str, str]
    results: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=30) as client:
            while not self.stop.is_set() and len(self.results) < MAX_REQUESTS:
                try:
                    status = client.post(self.url, json={"x": 3}).status_code
                except httpx.HTTPError:
                    status = 0
                self.results.append((time.monotonic(), status))
                self.stop.wait(PAUSE_S)

    def rate(self, start: float, end: float) -> tuple[float, int]:
        window = [status for at, status in self.results if start <= at < end]
        ok = sum(1 for status in window if status == 200)
        return (100.0 * ok / len(window) if window else 0.0), len(window)


def test_active_active_and_failover_under_load(clusters: Clusters) -> None:
    placed = wait_for(
        "replicas in two clusters", lambda: len(clusters.ready_clusters("spread")) == 2
    )
    assert placed
    serving = clusters.ready_clusters("spread")
    entry = next(cid for cid in clusters.platform.clusters if cid not in serving)
    # The edge says the client is in a serving cluster's region: requests go there. London
    # survives (the region-locked test needs it).
    victim = next(cid for cid in serving if cid != "local-eu-west")
    victim_region = clusters.routing()["clusters"][victim]["region"]
    headers = {
        "Authorization": f"Api-Key {clusters.platform.endpoints.api_key}",
        "x-plinth-client-region": victim_region,
    }
    load = Load(clusters.predict_url(entry, "spread"), headers)
    threads = [threading.Thread(target=load.run) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE_S)
        killed_at = time.monotonic()
        clusters.kill_cluster(victim)
        wait_for("the victim marked unhealthy", lambda: not clusters.healthy()[victim], 30)

        def replaced() -> bool:
            ready = clusters.ready_clusters("spread")
            return len(ready) == 2 and victim not in ready

        wait_for("replicas back in two other clusters", replaced)
        recovered_at = time.monotonic()
        time.sleep(AFTER_S)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    ended_at = time.monotonic()
    during, n_during = load.rate(killed_at, recovered_at)
    after, n_after = load.rate(recovered_at, ended_at)
    failures = [status for _, status in load.results if status != 200]
    print(
        f"\nfailover: window {recovered_at - killed_at:.1f} s, {n_during} requests,"
        f" {during:.2f} % ok; after: {n_after} requests, {after:.2f} % ok; failures {failures}"
    )
    assert recovered_at - killed_at < 45
    assert n_during > 0 and n_after > 0
    assert during >= 99.5
    assert after == 100.0


def test_region_locked_deployment_stays_in_its_geography(clusters: Clusters) -> None:
    ready = wait_for("the eu-only replica", lambda: clusters.ready_clusters("eu-only"))
    assert ready == ["local-eu-west"]
    headers = {"Authorization": f"Api-Key {clusters.platform.endpoints.api_key}"}
    # Reached from Oregon's gateway, it is served in London.
    oregon = clusters.predict_url("local-us-west", "eu-only")
    assert httpx.post(oregon, json={"x": 3}, headers=headers, timeout=30).status_code == 200

    clusters.kill_cluster("local-eu-west")
    wait_for("London marked unhealthy", lambda: not clusters.healthy()["local-eu-west"], 30)

    def refused() -> httpx.Response | None:
        response = httpx.post(oregon, json={"x": 3}, headers=headers, timeout=30)
        return response if response.status_code == 503 else None

    response = wait_for("a 503 from Oregon", refused, 30)
    error = response.json()["error"]
    assert error["code"] == "NO_CLUSTER_AVAILABLE"
    assert "residency eu" in error["message"]
    # Never a replica outside the EU, even with its only cluster down.
    time.sleep(3)
    table = clusters.routing()
    model = table["models"][clusters.models["eu-only"]]
    replicas = model["deployments"][model["environments"]["production"]]["replicas"]
    assert {r["cluster"] for r in replicas} <= {"local-eu-west"}
