"""What the stacks create fits the control plane's AWS adapters (boto3 against a moto server).

The DynamoDB table and SQS queues are created in moto from the inputs the programs
recorded under mocks; the real adapters (``DynamoDbMetadataStore``, ``SqsQueue``) configured
from the Lambda environment the program wired must then work against them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra.offline import OfflineRun
from infra.preflight import StackTree
from tests.support.cloud import moto_server

pytestmark = pytest.mark.integration

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
CONTROL_PLANE = "plinth/aws-control-plane/prod-us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def _client(endpoint: str, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def runs() -> dict[str, OfflineRun]:
    tree = StackTree(STACKS_DIR)
    return {
        "control-plane": tree.run("aws-control-plane", "prod-us-east-1"),
        "hybrid": tree.run("hybrid", "prod-us-east-1"),
        "aws-region": tree.run("aws-region", "prod-us-east-1"),
        "gcp-region": tree.run("gcp-region", "prod-europe-west4"),
    }


def _create_table(client: Any, recorded: Any) -> None:
    inputs = recorded.inputs
    schema = [{"AttributeName": inputs["hashKey"], "KeyType": "HASH"}]
    if inputs.get("rangeKey"):
        schema.append({"AttributeName": inputs["rangeKey"], "KeyType": "RANGE"})
    client.create_table(
        TableName=inputs["name"],
        KeySchema=schema,
        AttributeDefinitions=[
            {"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs["attributes"]
        ],
        BillingMode=inputs["billingMode"],
        **_secondary_indexes(inputs),
    )


def _secondary_indexes(inputs: dict[str, Any]) -> dict[str, Any]:
    """The table's global secondary indexes as the stack declares them."""
    indexes = [
        {
            "IndexName": index["name"],
            "KeySchema": [
                {"AttributeName": index["hashKey"], "KeyType": "HASH"},
                {"AttributeName": index["rangeKey"], "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": index["projectionType"]},
        }
        for index in inputs.get("globalSecondaryIndexes") or []
    ]
    return {"GlobalSecondaryIndexes": indexes} if indexes else {}


def test_stack_registrations_read_back_through_the_cluster_registry(runs, moto_endpoint) -> None:
    """hybrid + the region stacks write records the registry reads as Clusters, and the
    registry then owns them (a heartbeat's conditional write on the version Pulumi wrote)."""
    from control_plane.adapters.dynamodb_store import DynamoDbMetadataStore
    from control_plane.domain.cluster_registry import ClusterRegistry
    from control_plane.domain.clusters import ClusterKind, DriverKind

    client = _client(moto_endpoint, "dynamodb")
    table = runs["control-plane"].one("aws:dynamodb/table:Table", "plinth-prod-metadata")
    _create_table(client, table)
    for stack in ("hybrid", "aws-region", "gcp-region"):
        for item in runs[stack].of_type("aws:dynamodb/tableItem:TableItem"):
            assert item.inputs["tableName"] == table.inputs["name"]
            client.put_item(
                TableName=item.inputs["tableName"], Item=json.loads(item.inputs["item"])
            )

    registry = ClusterRegistry(DynamoDbMetadataStore(table.inputs["name"], client))
    clusters = {cluster.id: cluster for cluster in registry.list()}
    assert set(clusters) == {"acme-use2", "plinth-use1", "plinth-euw4"}
    customer, spill, gcp = clusters["acme-use2"], clusters["plinth-use1"], clusters["plinth-euw4"]
    assert customer.kind is ClusterKind.SELF_HOSTED and customer.spill_over_to == spill.id
    assert customer.priority < spill.priority and customer.gpu_limit("H100") == 16
    assert customer.driver.kind is DriverKind.KUBERNETES_ASSUMED_ROLE
    assert customer.driver.external_id_secret_arn.startswith("arn:aws:secretsmanager:")
    assert (spill.cloud, spill.region, gcp.cloud, gcp.region) == (
        "aws",
        "us-east-1",
        "gcp",
        "europe-west4",
    )
    # p5.48xlarge x 8 (H100), p5e.48xlarge x 4 (H200), g6.xlarge x 16 (L4)
    assert spill.capacity == {"H100": 64, "H200": 32, "L4": 16}
    assert gcp.capacity == {"H100": 48}  # a3-highgpu-8g: 4 + 2 nodes
    assert spill.location.distance_km(gcp.location) > 5000
    assert customer.location.distance_km(spill.location) < 1000

    beat = registry.heartbeat("acme-use2", now=1000.0)
    assert beat.health.last_heartbeat == 1000.0
    assert registry.get("acme-use2").max_gpus == 16


def test_sqs_queue_adapter_finds_the_queues_the_stack_creates(runs, moto_endpoint) -> None:
    from control_plane.adapters.sqs_queue import SqsQueue

    client = _client(moto_endpoint, "sqs")
    run = runs["control-plane"]
    for queue in run.of_type("aws:sqs/queue:Queue"):
        attributes = (
            {"VisibilityTimeout": str(int(queue.inputs["visibilityTimeoutSeconds"]))}
            if "visibilityTimeoutSeconds" in queue.inputs
            else {}
        )
        client.create_queue(QueueName=queue.inputs["name"], Attributes=attributes)
    env = run.one("aws:lambda/function:Function", "plinth-prod-api").inputs["environment"][
        "variables"
    ]
    queue = SqsQueue(client, queue_prefix=env["PLINTH_SQS_QUEUE_PREFIX"])  # create_missing off
    # The queue names the control plane really uses: the async priorities, and builds.
    from control_plane.domain.async_requests import PRIORITIES, queue_name

    for logical in (*(queue_name(p) for p in PRIORITIES), "builds"):
        queue.send(logical, json.dumps({"probe": logical}))
        (message,) = queue.receive(logical, max_messages=1, visibility_timeout_s=5)
        assert json.loads(message.body) == {"probe": logical}
        queue.ack(logical, message.receipt)
    # The moto server is shared with other tests: look only at this stack's queues.
    listed = client.list_queues(QueueNamePrefix=env["PLINTH_SQS_QUEUE_PREFIX"])["QueueUrls"]
    names = sorted(url.rsplit("/", 1)[-1] for url in listed)
    assert names == sorted(q.inputs["name"] for q in run.of_type("aws:sqs/queue:Queue"))


def test_async_queue_status_reads_the_stacks_table_by_its_index(
    runs, moto_endpoint, tmp_path
) -> None:
    """The metadata table as the stack declares it serves the async requests' indexed reads
    (the GSI the DynamoDB store queries), so queue status never scans the table."""
    from control_plane.adapters.dynamodb_store import DynamoDbMetadataStore
    from control_plane.adapters.sqlite_queue import SqliteQueue
    from control_plane.domain.async_requests import AsyncRequestService, parse_request

    client = _client(moto_endpoint, "dynamodb")
    table = runs["control-plane"].one("aws:dynamodb/table:Table", "plinth-prod-metadata")
    recorded = {**table.inputs, "name": f"{table.inputs['name']}-async"}  # moto is shared
    _create_table(client, SimpleNamespace(inputs=recorded))
    store = DynamoDbMetadataStore(recorded["name"], client)
    service = AsyncRequestService(store, SqliteQueue(tmp_path / "q.db"), lambda: 1000.0)
    spec = parse_request(b'{"model_input": 1}', check_webhook=print)
    for deployment in ("d1", "d1", "d2"):
        service.submit("m1", deployment, spec)
    assert service.queue_status("m1", "d1")["num_queued_requests"] == 2
