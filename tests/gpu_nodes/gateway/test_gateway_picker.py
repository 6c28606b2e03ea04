"""The replica picker: leases, parking behind one wake, park timeout, retries on another replica.

The control plane is played by an httpx transport serving ``/v1/routing`` and recording wakes;
the routing table source, balancer and picker are the gateway's own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from gpu_nodes.gateway.exceptions import NoReplicaError, NotFoundError, UpstreamError
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.routing import Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import RoutingTableSource

TARGET = Target("m1", "model-one", "d1", "production")
TOKEN = "internal"


class ControlPlane:
    """Answers the gateway's two control-plane calls: the routing table and wake."""

    def __init__(self) -> None:
        self.version = 0
        self.deployment: dict[str, Any] = {}
        self.wake_calls: list[str] = []
        self.routing_calls = 0
        self.wake_status = 202
        self.set_replicas(ready=[])

    def set_replicas(self, *, ready: list[str], status: str = "ACTIVE") -> None:
        self.version += 1
        replicas = [{"id": name, "url": f"http://{name}:1", "ready": True} for name in ready]
        self.deployment = {"status": status, "replicas": replicas}

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if request.url.path == "/v1/routing":
            self.routing_calls += 1
            model = {"name": "model-one", "deployments": {"d1": self.deployment}}
            body = {"version": self.version, "models": {"m1": model}}
            return httpx.Response(200, content=json.dumps(body).encode())
        self.wake_calls.append(request.url.path)
        return httpx.Response(self.wake_status, json={})


def _make(control_plane: ControlPlane, **settings: Any) -> tuple[ReplicaPicker, RoutingTableSource]:
    config = GatewaySettings("http://cp.test", internal_token=TOKEN, **settings)
    client = httpx.AsyncClient(transport=httpx.MockTransport(control_plane.handle))
    source = RoutingTableSource(config, client)
    return ReplicaPicker(config, source, client), source


def test_a_pick_is_a_lease_on_the_least_loaded_replica() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane()
        control_plane.set_replicas(ready=["a", "b"])
        picker, source = _make(control_plane)
        await source.refresh()
        first, second = await picker.pick(TARGET), await picker.pick(TARGET)
        assert {first.id, second.id} == {"a", "b"}  # each holds one outstanding request
        picker.release(first)
        assert (await picker.pick(TARGET)).id == first.id  # now the less loaded one
        other = picker.pick_another(TARGET, tried={first.url})
        assert other.id == second.id
        picker.unreachable(other)  # ended and set aside for a while
        picker.release(second)
        assert {(await picker.pick(TARGET)).id for _ in range(3)} == {first.id}
        with pytest.raises(UpstreamError, match="no other replica is ready"):
            picker.pick_another(TARGET, tried={"http://a:1", "http://b:1"})

    asyncio.run(scenario())


def test_requests_park_behind_one_wake_until_a_replica_is_ready() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane()
        picker, source = _make(control_plane, park_timeout_s=10)
        await source.refresh()
        picks = [asyncio.create_task(picker.pick(TARGET)) for _ in range(3)]
        async with asyncio.timeout(10):
            while picker.parked < 3:
                await asyncio.sleep(0.001)
        assert control_plane.wake_calls == ["/v1/models/m1/deployments/d1/wake"]
        control_plane.set_replicas(ready=["a"])
        await source.refresh()
        assert [replica.id for replica in await asyncio.gather(*picks)] == ["a", "a", "a"]
        assert picker.parked == 0

    asyncio.run(scenario())


def test_parking_is_bounded_and_failed_or_gone_deployments_do_not_park() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane()
        picker, source = _make(control_plane, park_timeout_s=0.05)
        await source.refresh()
        with pytest.raises(NoReplicaError, match=r"within 0\.05s"):
            await picker.pick(TARGET)
        assert picker.parked == 0 and len(control_plane.wake_calls) == 1
        control_plane.set_replicas(ready=[], status="FAILED")
        await source.refresh()
        with pytest.raises(NoReplicaError, match="FAILED"):
            await picker.pick(TARGET)
        with pytest.raises(NotFoundError, match="no longer exists"):
            await picker.pick(Target("m1", "model-one", "d-gone", None))
        assert picker.parked == 0 and len(control_plane.wake_calls) == 1

    asyncio.run(scenario())


def test_wake_is_deduplicated_unless_forced_and_reports_refusals() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane()
        picker, _ = _make(control_plane)
        assert await picker.request_wake("m1", "d1")
        assert await picker.request_wake("m1", "d1")  # within the repeat window: not sent
        assert len(control_plane.wake_calls) == 1
        control_plane.wake_status = 500
        assert not await picker.request_wake("m1", "d1", force=True)
        assert len(control_plane.wake_calls) == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(("parked", "at_least", "at_most"), [(False, 1, 1), (True, 5, 1000)])
def test_the_table_is_polled_faster_while_requests_are_parked(parked, at_least, at_most) -> None:
    async def scenario() -> int:
        control_plane = ControlPlane()
        _, source = _make(control_plane, poll_interval_s=30, parked_poll_interval_s=0.01)
        poller = asyncio.create_task(source.run(requests_parked=lambda: parked))
        await asyncio.sleep(0.3)
        poller.cancel()
        return control_plane.routing_calls

    assert at_least <= asyncio.run(scenario()) <= at_most
