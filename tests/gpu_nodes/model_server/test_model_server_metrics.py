"""``GET /metrics`` on a running model server, parsed with prometheus_client's parser."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

MODEL = """
import time

class Model:
    def predict(self, model_input):
        if model_input.get("fail"):
            raise RuntimeError("boom")
        time.sleep(model_input.get("sleep", 0))
        return {"ok": True}
"""


def _scrape(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/metrics")  # replicas serve it without a key (in-cluster only)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_predict_requests_latency_and_in_flight_are_exported(serve) -> None:
    env = {"PLINTH_MODEL_ID": "m-1", "PLINTH_DEPLOYMENT_ID": "d-1", "PLINTH_ENVIRONMENT": "prod"}
    server = serve(MODEL, env=env)
    predict = server.url + "/v1/models/model:predict"
    for _ in range(3):
        assert httpx.post(predict, json={"sleep": 0.01}).status_code == 200
    assert httpx.post(predict, json={"fail": True}).status_code == 500
    assert httpx.post(predict, content=b"not json").status_code == 400
    assert httpx.get(server.url + "/v1/models/model").status_code == 200  # a probe: not counted
    families = _scrape(server.url)

    requests = families["plinth_replica_requests"]
    assert requests.type == "counter"
    assert {frozenset(s.labels) for s in requests.samples} == {
        frozenset({"endpoint", "status_class"})
    }
    assert {s.labels["endpoint"] for s in requests.samples} == {"predict"}
    ok = {"endpoint": "predict", "status_class": "2xx"}
    assert _value(families, "plinth_replica_requests_total", **ok) == 3
    assert (
        _value(families, "plinth_replica_requests_total", endpoint="predict", status_class="5xx")
        == 1
    )
    assert (
        _value(families, "plinth_replica_requests_total", endpoint="predict", status_class="4xx")
        == 1
    )

    duration = families["plinth_replica_request_duration_seconds"]
    assert duration.type == "histogram"
    assert _value(families, duration.name + "_count", **ok) == 3
    assert _value(families, duration.name + "_sum", **ok) >= 0.03
    assert _value(families, duration.name + "_bucket", le="0.001", **ok) == 0

    assert families["plinth_replica_in_flight_requests"].type == "gauge"
    assert _value(families, "plinth_replica_in_flight_requests") == 0
    info = {"model_id": "m-1", "deployment_id": "d-1", "environment": "prod"}
    assert _value(families, "plinth_replica_info", **info) == 1
    assert not any(name.startswith("plinth_engine_") for name in families)


def test_in_flight_counts_a_running_predict(serve) -> None:
    server = serve(MODEL)
    with ThreadPoolExecutor(max_workers=1) as pool:
        slow = pool.submit(
            httpx.post, server.url + "/v1/models/model:predict", json={"sleep": 3}, timeout=30
        )
        deadline = time.monotonic() + 2.5
        while _value(_scrape(server.url), "plinth_replica_in_flight_requests") != 1:
            assert time.monotonic() < deadline, "the running predict never showed as in flight"
            time.sleep(0.05)
        assert slow.result().status_code == 200
    assert _value(_scrape(server.url), "plinth_replica_in_flight_requests") == 0
