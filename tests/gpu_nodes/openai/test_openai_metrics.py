"""``GET /metrics`` on a running engine replica (tiny model on CPU), parsed with prometheus_client.

The replica is the session's shared one: counters are compared before and after this test's
own requests, never against absolute values."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpu_nodes.model_server.testing import ModelServerProcess

pytestmark = pytest.mark.integration

ENGINE_GAUGES = (
    "plinth_engine_waiting_sequences",
    "plinth_engine_running_sequences",
    "plinth_engine_kv_cache_used_blocks",
    "plinth_engine_kv_cache_blocks",
)


def _scrape(url: str) -> dict[str, Any]:
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def test_engine_replica_exports_requests_tokens_and_kv_cache(replica: ModelServerProcess) -> None:
    before = _scrape(replica.url)
    body = {"model": "tiny-chat", "prompt": "hello", "max_tokens": 5, "ignore_eos": True}
    answer = httpx.post(replica.url + "/v1/completions", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    generated = answer.json()["usage"]["completion_tokens"]
    chat = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    assert httpx.post(replica.url + "/v1/models/model:predict", json=chat, timeout=60).is_success
    assert httpx.post(replica.url + "/v1/completions", json={"model": "nope"}).status_code >= 400
    after = _scrape(replica.url)

    def moved(sample: str, **labels: str) -> float:
        return _value(after, sample, **labels) - _value(before, sample, **labels)

    completions = {"endpoint": "completions", "status_class": "2xx"}
    assert moved("plinth_replica_requests_total", **completions) == 1
    assert moved("plinth_replica_requests_total", endpoint="predict", status_class="2xx") == 1
    assert moved("plinth_replica_requests_total", endpoint="completions", status_class="4xx") == 1
    assert moved("plinth_replica_request_duration_seconds_count", **completions) == 1
    assert after["plinth_replica_request_duration_seconds"].type == "histogram"

    tokens = after["plinth_engine_generated_tokens"]
    assert tokens.type == "counter"
    # At least this test's completion tokens (the chat's count too; other tests may run).
    assert moved("plinth_engine_generated_tokens_total") >= generated + 1
    for name in ENGINE_GAUGES:
        assert after[name].type == "gauge"
    total = _value(after, "plinth_engine_kv_cache_blocks")
    assert total > 0
    assert 0 <= _value(after, "plinth_engine_kv_cache_used_blocks") <= total
    # Idle after our requests (the session replica serves one test at a time).
    assert _value(after, "plinth_engine_running_sequences") == 0
    assert _value(after, "plinth_engine_waiting_sequences") == 0
    assert after["plinth_engine_preemptions"].type == "counter"
