"""``GET /metrics`` on a running gateway: scraped over HTTP and parsed with prometheus_client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpu_nodes.model_server.testing import ModelServerProcess
from tests.support.servers import free_port

INTERNAL_TOKEN = "internal-test-token"  # the gateway fixture's (conftest.py)

pytestmark = pytest.mark.integration

REQUEST_LABELS = {"model", "environment", "status_class"}


@pytest.fixture
def cold_replica(gw, tmp_path: Path) -> Iterator[ModelServerProcess]:
    server = ModelServerProcess(
        gw.package, log_path=tmp_path / "cold.log", env={"REPLICA_NAME": "cold-metrics"}
    )
    yield server
    server.stop()


def _scrape(url: str, token: str = INTERNAL_TOKEN) -> dict[str, Any]:
    response = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in families[family].samples if family in families else []:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return 0.0


def _with_model(gw, model_id: str, deployment: dict[str, Any]) -> None:
    models = gw.baseline_models()
    models[model_id] = {
        "name": model_id,
        "environments": {"production": "d-1"},
        "deployments": {"d-1": {"engine": False, "predict_concurrency": 8, **deployment}},
    }
    gw.publish(models)


def test_metrics_need_the_internal_token_or_an_api_key(gw, headers) -> None:
    assert httpx.get(gw.gateway.url + "/metrics").status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert httpx.get(gw.gateway.url + "/metrics", headers=wrong).status_code == 401
    assert httpx.get(gw.gateway.url + "/metrics", headers=headers).status_code == 200


def test_requests_latency_errors_and_parked_are_counted(gw, headers) -> None:
    url = gw.gateway.url
    before = _scrape(url)
    for path in ["production"] * 3 + ["environments/staging"]:
        response = httpx.post(url + f"/models/m-echo/{path}/predict", json={}, headers=headers)
        assert response.status_code == 200
    missing = httpx.post(url + "/models/m-nope-123/production/predict", json={}, headers=headers)
    assert missing.status_code == 404
    _with_model(
        gw,
        "m-dead",
        {
            "status": "ACTIVE",
            "replicas": [{"id": "r0", "url": f"http://127.0.0.1:{free_port()}", "ready": True}],
        },
    )
    dead = httpx.post(url + "/models/m-dead/production/predict", json={}, headers=headers)
    assert dead.status_code == 502
    after = _scrape(url)

    requests = after["plinth_gateway_requests"]
    assert requests.type == "counter"
    for sample in requests.samples:
        assert set(sample.labels) == REQUEST_LABELS
    # Only ids from the routing table become label values; the unknown model is "unknown".
    models = {s.labels["model"] for s in requests.samples}
    assert "m-nope-123" not in models and "unknown" in models

    def moved(family: str, sample: str, **labels: str) -> float:
        return _value(after, family, sample, **labels) - _value(before, family, sample, **labels)

    ok = {"model": "m-echo", "environment": "production", "status_class": "2xx"}
    assert moved("plinth_gateway_requests", "plinth_gateway_requests_total", **ok) == 3
    staging = {**ok, "environment": "staging"}
    assert moved("plinth_gateway_requests", "plinth_gateway_requests_total", **staging) == 1
    unknown = {"model": "unknown", "status_class": "4xx"}
    assert moved("plinth_gateway_requests", "plinth_gateway_requests_total", **unknown) >= 1
    failed = {"model": "m-dead", "environment": "production", "status_class": "5xx"}
    assert moved("plinth_gateway_requests", "plinth_gateway_requests_total", **failed) == 1

    duration = after["plinth_gateway_request_duration_seconds"]
    assert duration.type == "histogram"
    assert moved(duration.name, duration.name + "_count", **ok) == 3
    assert moved(duration.name, duration.name + "_sum", **ok) > 0
    assert _value(after, duration.name, duration.name + "_bucket", le="+Inf", **ok) >= 3

    errors = after["plinth_gateway_upstream_errors"]
    assert errors.type == "counter"
    unreachable = {"model": "m-dead", "environment": "production", "kind": "unreachable"}
    assert moved(errors.name, errors.name + "_total", **unreachable) == 1
    for name in ("plinth_gateway_in_flight_requests", "plinth_gateway_parked_requests"):
        assert after[name].type == "gauge"


def test_a_parked_request_shows_as_parked_and_in_flight(gw, headers, cold_replica) -> None:
    _with_model(gw, "m-cold", {"status": "INACTIVE", "replicas": []})
    url = gw.gateway.url
    results: list[httpx.Response] = []
    parked = threading.Thread(
        target=lambda: results.append(
            httpx.post(
                url + "/models/m-cold/production/predict", json={}, headers=headers, timeout=30
            )
        )
    )
    parked.start()
    deadline = time.monotonic() + 10
    while True:
        families = _scrape(url)
        if _value(families, "plinth_gateway_parked_requests", "plinth_gateway_parked_requests"):
            break
        assert time.monotonic() < deadline, "the request never showed as parked"
        time.sleep(0.05)
    in_flight = "plinth_gateway_in_flight_requests"
    assert _value(families, in_flight, in_flight) >= 1
    replica = cold_replica
    replica.wait_ready()
    _with_model(
        gw,
        "m-cold",
        {"status": "ACTIVE", "replicas": [{"id": "c", "url": replica.url, "ready": True}]},
    )
    parked.join(30)
    assert results and results[0].status_code == 200
    families = _scrape(url)
    parked_now = "plinth_gateway_parked_requests"
    assert _value(families, parked_now, parked_now) == 0


def test_a_replica_dying_mid_stream_counts_as_mid_response(gw, headers, cold_replica) -> None:
    cold_replica.wait_ready()
    _with_model(
        gw,
        "m-doom",
        {"status": "ACTIVE", "replicas": [{"id": "d", "url": cold_replica.url, "ready": True}]},
    )
    before = _scrape(gw.gateway.url)
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            gw.gateway.url + "/models/m-doom/production/predict",
            json={"op": "stream_then_die"},
            headers=headers,
            timeout=30,
        ) as response,
    ):
        for _ in response.iter_lines():
            pass
    labels = {"model": "m-doom", "environment": "production", "kind": "mid_response"}
    name = "plinth_gateway_upstream_errors_total"
    # The session's gateway is shared: count from what it had already seen for this model.
    start = _value(before, "plinth_gateway_upstream_errors", name, **labels)
    deadline = time.monotonic() + 5  # counted when the gateway's relay ends, just after the client
    while _value(_scrape(gw.gateway.url), "plinth_gateway_upstream_errors", name, **labels) < (
        start + 1
    ):
        assert time.monotonic() < deadline, "the broken stream was not counted"
        time.sleep(0.05)
