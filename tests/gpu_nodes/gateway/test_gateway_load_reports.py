"""The gateway's load reports: what the picker counts, and what the reporter POSTs.

The control plane is played by an httpx transport serving ``/v1/routing`` and recording
``/v1/load_reports``; the routing table source, balancer, picker and reporter are the gateway's
own (a real gateway sending to a real control plane: tests/e2e/test_autoscaling_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from gpu_nodes.gateway.load_reports import (
    MAX_DEPLOYMENTS_PER_REPORT,
    QUIET_REPORTS,
    LoadReporter,
)
from gpu_nodes.gateway.picker import ReplicaPicker
from gpu_nodes.gateway.routing import Target
from gpu_nodes.gateway.settings import GatewaySettings
from gpu_nodes.gateway.table_source import RoutingTableSource

TOKEN = "internal"
D1 = Target("m1", "model-one", "d1", "production")
D2 = Target("m1", "model-one", "d2", None)


class ControlPlane:
    def __init__(self, deployments: dict[str, Any]) -> None:
        self.deployments = deployments
        self.reports: list[dict[str, Any]] = []
        self.report_status = 202

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        if request.url.path == "/v1/routing":
            model = {"name": "model-one", "deployments": self.deployments}
            return httpx.Response(200, json={"version": 1, "models": {"m1": model}})
        if request.url.path == "/v1/load_reports":
            self.reports.append(json.loads(request.content))
            return httpx.Response(self.report_status, json={"stored": 0})
        return httpx.Response(202, json={})  # wake


def _replicas(*names: str) -> list[dict[str, Any]]:
    return [{"id": name, "url": f"http://{name}:1", "ready": True} for name in names]


def _make(control_plane: ControlPlane) -> tuple[ReplicaPicker, RoutingTableSource, LoadReporter]:
    settings = GatewaySettings(
        "http://cp.test", internal_token=TOKEN, gateway_id="gw-a", park_timeout_s=10
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(control_plane.handle))
    source = RoutingTableSource(settings, client)
    picker = ReplicaPicker(settings, source, client)
    reporter = LoadReporter(settings, client, picker.load, picker.balancer, lambda: source.snapshot)
    return picker, source, reporter


def test_a_report_counts_in_flight_per_replica_parked_and_arrivals() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane(
            {"d1": {"replicas": _replicas("a", "b")}, "d2": {"replicas": []}}
        )
        picker, source, reporter = _make(control_plane)
        await source.refresh()
        leases = [await picker.pick(D1) for _ in range(3)]
        picker.release(leases[0])  # answered: an arrival, no longer in flight
        parked = asyncio.create_task(picker.pick(D2))
        async with asyncio.timeout(5):
            while picker.parked < 1:
                await asyncio.sleep(0.001)
        assert await reporter.report_once() == 2
        (report,) = control_plane.reports
        assert report["gateway_id"] == "gw-a" and report["at"] > 0
        by_id = {entry["deployment_id"]: entry for entry in report["deployments"]}
        assert by_id["d1"]["in_flight"] == 2 and by_id["d1"]["arrivals"] == 3
        assert sorted(by_id["d1"]["replicas"].values()) == [1, 1]
        assert by_id["d1"]["parked"] == 0 and by_id["d1"]["waiting"] == 0
        assert (by_id["d2"]["parked"], by_id["d2"]["arrivals"], by_id["d2"]["in_flight"]) == (
            1,
            1,
            0,
        )
        parked.cancel()
        for lease in leases[1:]:
            picker.release(lease)

    asyncio.run(scenario())


def test_a_quiet_deployment_gets_a_few_zero_reports_then_none() -> None:
    async def scenario() -> None:
        control_plane = ControlPlane({"d1": {"replicas": _replicas("a")}})
        picker, source, reporter = _make(control_plane)
        await source.refresh()
        picker.release(await picker.pick(D1))
        sent = [await reporter.report_once() for _ in range(QUIET_REPORTS + 3)]
        assert sent == [1] * (QUIET_REPORTS + 1) + [0, 0]
        zeros = control_plane.reports[1:]
        assert all(r["deployments"][0]["arrivals"] == 0 for r in zeros)
        assert len(control_plane.reports) == QUIET_REPORTS + 1  # nothing sent when all quiet

    asyncio.run(scenario())


def test_reports_are_bounded_in_size_and_a_failing_control_plane_is_not_fatal() -> None:
    async def scenario() -> None:
        count = MAX_DEPLOYMENTS_PER_REPORT + 7
        deployments = {f"d{i}": {"replicas": []} for i in range(count)}
        control_plane = ControlPlane(deployments)
        picker, source, reporter = _make(control_plane)
        await source.refresh()
        for i in range(count):
            picker.load.arrived(f"d{i}")
        control_plane.report_status = 500
        assert await reporter.report_once() == count
        sizes = [len(r["deployments"]) for r in control_plane.reports]
        assert sizes == [MAX_DEPLOYMENTS_PER_REPORT, 7]

    asyncio.run(scenario())
