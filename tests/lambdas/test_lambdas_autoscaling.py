"""The autoscaling loop through the Lambda handlers, on DynamoDB (a moto server on loopback).

A gateway's load report goes in through the API handler (an API Gateway v2 event); the
scheduled reconciler handler runs one pass, which reads the reports from DynamoDB, decides,
applies the new count and records it; the API handler then serves the scaling history. Async
requests queued through the API handler are load too: they wake a deployment at zero. The
cluster is an in-memory one (the Lambda drives Kubernetes; its manifests are tested elsewhere).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from control_plane.domain.records import (
    AutoscalingSettings,
    DeploymentRecord,
    DeploymentStatus,
    ModelRecord,
)
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec, ReplicaState
from control_plane.settings import Settings
from control_plane.wiring import Platform
from lambdas import api, reconciler

pytestmark = pytest.mark.integration

INTERNAL_TOKEN = "lambda-internal-token"


class InstantCluster:
    name = "instant"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"d1": 1}

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        self.counts[spec.deployment_id] = replicas

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        return [
            ReplicaState(f"{deployment_id}-{i}", deployment_id, f"http://r{i}", ReplicaPhase.READY)
            for i in range(self.counts.get(deployment_id, 0))
        ]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def dynamodb_env(plinth_env: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PLINTH_STORE": "dynamodb",
        "PLINTH_DYNAMODB_TABLE": f"metadata-{uuid.uuid4().hex[:8]}",
        "PLINTH_AWS_REGION": "us-east-1",
        "PLINTH_INTERNAL_TOKEN": INTERNAL_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    client.create_table(
        TableName=Settings.from_env().dynamodb_table,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[
            {"AttributeName": "tbl", "KeyType": "HASH"},
            {"AttributeName": "key", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "tbl", "AttributeType": "S"},
            {"AttributeName": "key", "AttributeType": "S"},
        ],
    )
    try:
        yield endpoint
    finally:
        server.stop()


def create_deployment(platform: Platform, status: DeploymentStatus, *, replicas: int) -> None:
    platform.repo.create_model(ModelRecord(id="m1", name="m", created_at=0.0))
    settings = AutoscalingSettings(max_replica=3, autoscaling_window=10, scale_down_delay=60)
    platform.repo.create_deployment(
        DeploymentRecord(
            id="d1",
            model_id="m1",
            name="d1",
            status=status,
            created_at=0.0,
            status_changed_at=0.0,
            archive_sha256="0" * 64,
            config={"model_name": "m"},
            desired_replicas=replicas,
            autoscaling_settings=settings,
        )
    )


def test_a_report_through_the_api_handler_scales_on_the_reconciler_handlers_pass(
    dynamodb_env: str, http_api_event: Any, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = InstantCluster()
    platform = Platform(Settings.from_env(), driver=cluster)
    monkeypatch.setattr(reconciler, "_platform", reconciler.Lazy(lambda: platform))
    api_handler = api.build_handler()
    try:
        create_deployment(platform, DeploymentStatus.ACTIVE, replicas=1)
        gateway = {"authorization": f"Bearer {INTERNAL_TOKEN}"}
        now = time.time()
        for offset in (-2.0, -1.0, 0.0):
            entry = {"model_id": "m1", "deployment_id": "d1", "in_flight": 3, "arrivals": 3}
            body = {"gateway_id": "gw-1", "at": now + offset, "deployments": [entry]}
            event = http_api_event("POST", "/v1/load_reports", headers=gateway, body=body)
            answer = api_handler(event, None)
            assert answer["statusCode"] == 202, answer["body"]
        assert reconciler.handler({"source": "aws.scheduler"}, None)["decisions"] >= 1
        assert platform.repo.get_deployment("m1", "d1").desired_replicas == 3
        assert cluster.counts["d1"] == 3
        auth = {"authorization": f"Api-Key {admin_key}"}
        path = "/v1/models/m1/deployments/d1/scaling_events"
        answer = api_handler(http_api_event("GET", path, headers=auth), None)
        (event,) = json.loads(answer["body"])["scaling_events"]
        assert (event["from_replicas"], event["to_replicas"]) == (1, 3)
    finally:
        api_handler.app.state.platform.close()
        platform.close()


def test_queued_async_requests_wake_a_deployment_at_zero_on_the_reconciler_handlers_pass(
    dynamodb_env: str, http_api_event: Any, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = InstantCluster()
    cluster.counts["d1"] = 0
    platform = Platform(Settings.from_env(), driver=cluster)
    monkeypatch.setattr(reconciler, "_platform", reconciler.Lazy(lambda: platform))
    api_handler = api.build_handler()
    try:
        create_deployment(platform, DeploymentStatus.INACTIVE, replicas=0)
        auth = {"authorization": f"Api-Key {admin_key}"}
        reconciler.handler({"source": "aws.scheduler"}, None)
        assert platform.repo.get_deployment("m1", "d1").desired_replicas == 0
        path = "/v1/models/m1/deployments/d1/async_requests"
        for _ in range(2):
            event = http_api_event("POST", path, headers=auth, body={"model_input": {"x": 1}})
            answer = api_handler(event, None)
            assert answer["statusCode"] == 201, answer["body"]
        # The backlog is one Query on the deployment's own partition, not a table scan.
        assert len(platform.store.scan("async_queued#m1/d1")) == 2
        reconciler.handler({"source": "aws.scheduler"}, None)
        assert platform.repo.get_deployment("m1", "d1").desired_replicas == 3  # ceil(2 / 0.7)
        assert cluster.counts["d1"] == 3
        events_path = "/v1/models/m1/deployments/d1/scaling_events"
        answer = api_handler(http_api_event("GET", events_path, headers=auth), None)
        last = json.loads(answer["body"])["scaling_events"][-1]
        assert (last["from_replicas"], last["to_replicas"]) == (0, 3)
        assert "async backlog of 2 queued request(s)" in last["reason"]
    finally:
        api_handler.app.state.platform.close()
        platform.close()
