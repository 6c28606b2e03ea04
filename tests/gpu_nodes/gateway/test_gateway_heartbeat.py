"""A cluster's gateway sends its cluster's heartbeats to a real control plane (internal token)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from control_plane.app import create_app
from control_plane.domain.cluster_registry import ClusterRegistry
from control_plane.domain.clusters import Cluster, GeoPoint
from control_plane.settings import Settings
from control_plane.wiring import Platform
from gpu_nodes.gateway.heartbeat import ClusterHeartbeat
from gpu_nodes.gateway.settings import GatewaySettings
from tests.support.servers import serve

TOKEN = "int_heartbeat_test"


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[str, Platform]]:
    settings = Settings(
        state_dir=tmp_path, internal_token=TOKEN, cluster_kind="none", run_background_workers=False
    )
    platform = Platform(settings)
    ClusterRegistry(platform.store).register(
        Cluster("local-eu-west", "local", "eu-west", GeoPoint(51.5, -0.1))
    )
    try:
        with serve(create_app(settings, platform=platform)) as url:
            yield url, platform
    finally:
        platform.close()


def beat(url: str, cluster_id: str | None, token: str = TOKEN) -> bool:
    async def once() -> bool:
        settings = GatewaySettings(url, internal_token=token, cluster_id=cluster_id)
        async with httpx.AsyncClient() as client:
            return await ClusterHeartbeat(settings, client).beat_once()

    return asyncio.run(once())


def test_heartbeats_reach_the_cluster_record(control_plane: tuple[str, Platform]) -> None:
    url, platform = control_plane
    registry = ClusterRegistry(platform.store)
    assert registry.get("local-eu-west").health.last_heartbeat is None
    assert beat(url, "local-eu-west")
    assert registry.get("local-eu-west").health.last_heartbeat is not None


def test_a_failing_heartbeat_is_reported_not_raised(control_plane: tuple[str, Platform]) -> None:
    url, _ = control_plane
    assert not beat(url, "not-registered")  # 404
    assert not beat(url, "local-eu-west", token="wrong")  # 401


def test_a_gateway_without_a_cluster_sends_none() -> None:
    async def run() -> None:
        settings = GatewaySettings("http://127.0.0.1:9", cluster_id=None)
        async with httpx.AsyncClient() as client:
            await asyncio.wait_for(ClusterHeartbeat(settings, client).run(), timeout=1)

    asyncio.run(run())  # returns at once instead of beating
