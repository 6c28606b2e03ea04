"""LoadReportStore contract: the SQLite adapter and the DynamoDB one (moto) pass the same tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.adapters.sqlite_load_reports import SqliteLoadReportStore
from control_plane.domain.autoscaling import LoadReport, ReplicaLoad
from control_plane.ports.load_reports import LoadReportStore

T0 = 1_700_000_000.0


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> LoadReportStore:
    return SqliteLoadReportStore(tmp_path / "plinth.db")


def _dynamodb(request: pytest.FixtureRequest, tmp_path: Path) -> LoadReportStore:
    import boto3

    from control_plane.adapters.dynamodb_load_reports import DynamoDbLoadReportStore

    client: Any = boto3.client(
        "dynamodb",
        endpoint_url=request.getfixturevalue("contract_moto_endpoint"),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"metadata-{uuid.uuid4().hex[:12]}"  # the metadata table's schema, one per test
    client.create_table(
        TableName=name,
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
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return DynamoDbLoadReportStore(name, client)


@pytest.fixture(
    params=[
        pytest.param(_sqlite, id="sqlite"),
        pytest.param(_dynamodb, id="dynamodb", marks=pytest.mark.integration),
    ]
)
def reports(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LoadReportStore]:
    store = request.param(request, tmp_path)
    yield store
    store.close()


def add(store: LoadReportStore, gateway: str, at: float, in_flight: int, ttl: float = 10) -> None:
    store.add("m1/d1", gateway, at, {"in_flight": in_flight}, expires_at=at + ttl)


def test_recent_reports_of_every_gateway_oldest_first(reports: LoadReportStore) -> None:
    add(reports, "g2", T0 + 1, 5)
    add(reports, "g1", T0 + 1, 3)
    add(reports, "g1", T0, 2)
    got = reports.recent("m1/d1", since=T0, now=T0 + 2)
    assert [(r.gateway_id, r.at, r.value) for r in got] == [
        ("g1", T0, {"in_flight": 2}),
        ("g1", T0 + 1, {"in_flight": 3}),
        ("g2", T0 + 1, {"in_flight": 5}),
    ]


def test_since_bounds_the_window(reports: LoadReportStore) -> None:
    for second in range(5):
        add(reports, "g1", T0 + second, second)
    got = reports.recent("m1/d1", since=T0 + 2.5, now=T0 + 5)
    assert [r.at for r in got] == [T0 + 3, T0 + 4]


def test_expired_reports_are_never_returned(reports: LoadReportStore) -> None:
    add(reports, "g1", T0, 1, ttl=5)
    add(reports, "g1", T0 + 3, 2, ttl=5)
    assert [r.at for r in reports.recent("m1/d1", since=T0, now=T0 + 4.9)] == [T0, T0 + 3]
    assert [r.at for r in reports.recent("m1/d1", since=T0, now=T0 + 5)] == [T0 + 3]
    assert reports.recent("m1/d1", since=T0, now=T0 + 8) == []


def test_a_resent_report_replaces_the_first(reports: LoadReportStore) -> None:
    add(reports, "g1", T0, 1)
    add(reports, "g1", T0, 4)
    got = reports.recent("m1/d1", since=T0, now=T0 + 1)
    assert [(r.at, r.value) for r in got] == [(T0, {"in_flight": 4})]


def test_deployments_are_kept_apart(reports: LoadReportStore) -> None:
    reports.add("m1/d1", "g1", T0, {"in_flight": 1}, expires_at=T0 + 10)
    reports.add("m1/d10", "g1", T0, {"in_flight": 2}, expires_at=T0 + 10)
    assert [r.value for r in reports.recent("m1/d1", since=T0, now=T0)] == [{"in_flight": 1}]
    assert [r.value for r in reports.recent("m1/d10", since=T0, now=T0)] == [{"in_flight": 2}]
    assert reports.recent("m2/d1", since=T0, now=T0) == []


def test_domain_reports_round_trip(reports: LoadReportStore) -> None:
    sent = LoadReport(
        "g1", T0 + 0.25, in_flight=3, waiting=1, parked=0, arrivals=7,
        replicas=(ReplicaLoad("r-a", 2), ReplicaLoad("r-b", 1)),
    )  # fmt: skip
    reports.add("m1/d1", sent.gateway_id, sent.at, sent.to_value(), expires_at=T0 + 10)
    (stored,) = reports.recent("m1/d1", since=T0, now=T0 + 1)
    assert LoadReport.from_value(stored.gateway_id, stored.at, stored.value) == sent
