"""What the stacks create fits the control plane's AWS adapters (boto3 against a moto server).

The DynamoDB table and SQS queues are created in moto from the inputs the programs
recorded under mocks; the real adapters (``DynamoDbMetadataStore``, ``SqsQueue``) configured
from the Lambda environment the program wired must then work against them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.offline import OfflineRun
from infra.preflight import StackTree

pytestmark = pytest.mark.integration

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
CONTROL_PLANE = "plinth/aws-control-plane/prod-us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


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
    )


def test_hybrid_registrations_read_back_through_the_dynamodb_store(runs, moto_endpoint) -> None:
    from control_plane.adapters.dynamodb_store import DynamoDbMetadataStore

    client = _client(moto_endpoint, "dynamodb")
    table = runs["control-plane"].one("aws:dynamodb/table:Table", "plinth-prod-metadata")
    _create_table(client, table)
    for item in runs["hybrid"].of_type("aws:dynamodb/tableItem:TableItem"):
        assert item.inputs["tableName"] == table.inputs["name"]
        client.put_item(TableName=item.inputs["tableName"], Item=json.loads(item.inputs["item"]))

    store = DynamoDbMetadataStore(table.inputs["name"], client)
    records = {i.key: i.value for i in store.scan("clusters")}
    assert set(records) == {"acme-use2", "plinth-use1"}
    assert records["acme-use2"]["priority"] < records["plinth-use1"]["priority"]
    assert records["acme-use2"]["spill_over_to"] == "plinth-use1"
    assert records["acme-use2"]["external_id_secret_arn"].startswith("arn:aws:secretsmanager:")
    # The store can take over the record (conditional write on the version Pulumi wrote).
    current = store.get("clusters", "acme-use2")
    assert current is not None and current.version == 1
    assert (
        store.put("clusters", "acme-use2", {**current.value, "max_gpus": 24}, expected_version=1)
        == 2
    )


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
    for logical in ("async-requests", "builds"):
        queue.send(logical, json.dumps({"probe": logical}))
        (message,) = queue.receive(logical, max_messages=1, visibility_timeout_s=5)
        assert json.loads(message.body) == {"probe": logical}
        queue.ack(logical, message.receipt)
    # The moto server is shared with other tests: look only at this stack's queues.
    listed = client.list_queues(QueueNamePrefix=env["PLINTH_SQS_QUEUE_PREFIX"])["QueueUrls"]
    names = sorted(url.rsplit("/", 1)[-1] for url in listed)
    assert names == sorted(q.inputs["name"] for q in run.of_type("aws:sqs/queue:Queue"))
