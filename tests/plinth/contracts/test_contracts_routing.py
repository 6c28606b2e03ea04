"""The routing table models: the documented JSON parses and is written back unchanged."""

from __future__ import annotations

import json
from typing import Any

from plinth.contracts.routing import DeploymentRoute, ModelRoute, ReplicaRoute, RoutingTable

# The example of docs/architecture.md "Routing table".
WIRE: dict[str, Any] = {
    "version": 42,
    "api_key_hashes": ["0" * 64],
    "models": {
        "m1": {
            "name": "my-model",
            "environments": {"production": "d1", "development": "d1", "staging": None},
            "deployments": {
                "d1": {
                    "status": "ACTIVE",
                    "engine": False,
                    "predict_concurrency": 1,
                    "openai": False,
                    "predict_path": "/v1/models/model:predict",
                    "replicas": [{"id": "r-1", "url": "http://127.0.0.1:41234", "ready": True}],
                }
            },
        }
    },
}


def test_the_documented_table_round_trips_unchanged() -> None:
    table = RoutingTable.model_validate_json(json.dumps(WIRE))
    assert table.models["m1"].deployments["d1"].replicas[0].url == "http://127.0.0.1:41234"
    assert table.model_dump(mode="json") == WIRE


def test_what_the_writer_builds_is_what_the_reader_parses() -> None:
    written = RoutingTable(
        version=3,
        models={
            "m1": ModelRoute(
                name="m",
                environments={"production": "d1"},
                deployments={"d1": DeploymentRoute(replicas=[ReplicaRoute(id="r", url="u")])},
            )
        },
    )
    assert RoutingTable.model_validate_json(written.model_dump_json()) == written


def test_readers_ignore_fields_a_newer_writer_adds() -> None:
    model = {**WIRE["models"]["m1"], "owner": "x"}
    newer = {**WIRE, "regions": ["eu"], "models": {"m1": model}}
    assert RoutingTable.model_validate(newer).model_dump(mode="json") == WIRE
