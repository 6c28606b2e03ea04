"""Pure parts of the gateway: path grammar, host parsing, replica choice, table lookups."""

from __future__ import annotations

import pytest

from gpu_nodes.gateway.balancer import ReplicaBalancer
from gpu_nodes.gateway.exceptions import ModelNotFoundError, NotFoundError
from gpu_nodes.gateway.paths import InferencePath, model_id_from_host, parse_inference_path
from gpu_nodes.gateway.routing import RoutingSnapshot, Selector, hash_api_key
from plinth.contracts.routing import ReplicaRoute, RoutingTable

ENV = "environment"


@pytest.mark.parametrize(
    ("path", "host_model", "expected"),
    [
        ("/models/m1/production/predict", None, ("m1", ENV, "production", "predict", "")),
        ("/models/m1/development/wake", None, ("m1", ENV, "development", "wake", "")),
        ("/models/m1/environments/qa/async_predict", None, ("m1", ENV, "qa", "async_predict", "")),
        ("/models/m1/deployment/d9/predict", None, ("m1", "deployment", "d9", "predict", "")),
        (
            "/models/m1/production/v1/chat/completions",
            None,
            ("m1", ENV, "production", "openai", "/v1/chat/completions"),
        ),
        ("/production/predict", "m2", ("m2", ENV, "production", "predict", "")),
        (
            "/models/m1/environments/qa/sync/v1/chat/completions",
            None,
            ("m1", ENV, "qa", "sync", "/v1/chat/completions"),
        ),
        (
            "/deployment/d1/sync/health/check",
            "m2",
            ("m2", "deployment", "d1", "sync", "/health/check"),
        ),
        ("/models/m1/production/sync", None, ("m1", ENV, "production", "sync", "")),
        ("/deployment/d1/v1/models", "m2", ("m2", "deployment", "d1", "openai", "/v1/models")),
        ("/models/m1/staging/predict", None, None),  # only production/development are short
        ("/models/m1/environments/predict", None, None),
        ("/models/m1/production", None, None),
        ("/models/m1/production/predict/extra", None, None),
        ("/models/m1/production/v1", None, None),
        ("/production/predict", None, None),
    ],
)
def test_path_grammar(path, host_model, expected) -> None:
    if expected is not None:
        model_id, kind, name, action, upstream = expected
        expected = InferencePath(model_id, Selector(kind, name), action, upstream)
    assert parse_inference_path(path, host_model) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("model-abc.plinth.localhost", "abc"),
        ("model-abc.plinth.localhost:8801", "abc"),
        ("MODEL-abc.Plinth.Localhost", "abc"),
        ("model-.plinth.localhost", None),
        ("abc.plinth.localhost", None),
        ("model-abc.example.com", None),
        ("127.0.0.1:8801", None),
        (None, None),
    ],
)
def test_model_id_from_host(host, expected) -> None:
    assert model_id_from_host(host, "plinth.localhost") == expected


def _replicas(*names: str, ready: bool = True) -> list[ReplicaRoute]:
    return [ReplicaRoute(id=n, url=f"http://{n}", ready=ready) for n in names]


def test_balancer_least_outstanding_then_round_robin() -> None:
    balancer = ReplicaBalancer()
    replicas = _replicas("a", "b", "c")
    # Idle: round robin over all three.
    assert [balancer.choose("d", replicas).id for _ in range(6)] == ["a", "b", "c"] * 2
    balancer.acquire("http://a")
    balancer.acquire("http://a")
    balancer.acquire("http://b")
    assert {balancer.choose("d", replicas).id for _ in range(4)} == {"c"}
    balancer.release("http://a")
    balancer.release("http://a")
    picks = {balancer.choose("d", replicas).id for _ in range(4)}
    assert picks == {"a", "c"}
    assert balancer.choose("d", replicas, exclude={"http://a", "http://c"}).id == "b"
    assert balancer.choose("d", _replicas("x", ready=False)) is None
    assert balancer.outstanding("http://b") == 1


TABLE = RoutingTable.model_validate(
    {
        "version": 3,
        "api_key_hashes": [hash_api_key("k1")],
        "models": {
            "m1": {
                "name": "llm",
                "environments": {"production": "d1", "staging": "d2", "empty": None},
                "deployments": {"d1": {"engine": True}, "d2": {"engine": True}},
            },
            "m2": {
                "name": "classic",
                "environments": {"production": "d3"},
                "deployments": {"d3": {}},
                "unknown_future_field": 1,
            },
        },
    }
)


def test_snapshot_lookups() -> None:
    snapshot = RoutingSnapshot(TABLE)
    assert snapshot.key_is_valid("k1") and not snapshot.key_is_valid("k2")
    assert snapshot.resolve("m1", Selector(ENV, "staging")).deployment_id == "d2"
    assert snapshot.resolve_openai_model("llm").deployment_id == "d1"
    assert snapshot.resolve_openai_model("m1@staging").deployment_id == "d2"
    assert [m["id"] for m in snapshot.openai_models()] == ["llm"]
    with pytest.raises(ModelNotFoundError):
        snapshot.resolve_openai_model("classic@qa")
    with pytest.raises(ModelNotFoundError):
        snapshot.resolve_openai_model("nope")
    with pytest.raises(NotFoundError, match="has no deployment yet"):
        snapshot.resolve("m1", Selector(ENV, "empty"))
    with pytest.raises(NotFoundError, match="deployment 'd9'"):
        snapshot.resolve("m1", Selector("deployment", "d9"))


def test_balancer_sets_aside_a_refusing_replica_unless_it_is_the_only_one() -> None:
    balancer = ReplicaBalancer(eject_seconds=60)
    replicas = _replicas("a", "b")
    balancer.eject("http://a")
    assert {balancer.choose("d", replicas).id for _ in range(4)} == {"b"}
    assert balancer.choose("d", _replicas("a")).id == "a"  # better than nothing
    expired = ReplicaBalancer(eject_seconds=0)
    expired.eject("http://a")
    assert {expired.choose("d", replicas).id for _ in range(4)} == {"a", "b"}
