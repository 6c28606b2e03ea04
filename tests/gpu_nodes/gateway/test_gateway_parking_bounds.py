"""Parking is bounded in length and in time: beyond either, 503 + Retry-After naming the bound.

Through HTTP against a running gateway (``python -m gpu_nodes.gateway``) whose control plane
stub lists a deployment at zero replicas and never brings one up.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from gpu_nodes.gateway.settings import GatewaySettings

pytestmark = pytest.mark.integration

COLD = {
    "name": "m-cold",
    "environments": {"production": "d-1"},
    "deployments": {"d-1": {"status": "INACTIVE", "engine": True, "replicas": []}},
}


def _publish_cold(gw) -> None:
    models = gw.baseline_models()
    models["m-cold"] = COLD
    gw.publish(models)


def test_queue_full_answers_503_at_once_while_the_parked_ones_time_out(
    gw, headers, start_gateway
) -> None:
    _publish_cold(gw)
    gateway = start_gateway(
        "--park-timeout", "3", "--max-parked", "2", "--park-retry-after", "7",
        "--poll-interval", "0.1",
    )  # fmt: skip
    gateway.wait_version(gw.control_plane.table["version"])
    url = gateway.url + "/models/m-cold/production/predict"
    with ThreadPoolExecutor(max_workers=2) as pool:
        parked = [pool.submit(httpx.post, url, json={}, headers=headers, timeout=30) for _ in "ab"]
        deadline = time.monotonic() + 10
        while "parked" not in _parked_gauge(gateway.url, headers) and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        refused = httpx.post(url, json={}, headers=headers, timeout=30)
        refused_after = time.monotonic() - started
        timed_out = [future.result() for future in parked]
    assert refused.status_code == 503 and refused_after < 2
    assert refused.headers["retry-after"] == "7"
    error = refused.json()["error"]
    assert error["code"] == "PARKED_QUEUE_FULL"
    assert (error["bound"], error["limit"]) == ("max_parked_requests", 2)
    for response in timed_out:
        assert response.status_code == 503 and response.headers["retry-after"] == "7"
        error = response.json()["error"]
        assert error["code"] == "NO_REPLICA_AVAILABLE"
        assert (error["bound"], error["limit"]) == ("park_timeout_s", 3)
        assert "became ready within 3s" in error["message"]
    assert gw.control_plane.wake_calls == [("m-cold", "d-1")]  # one wake for all three


def test_openai_shape_carries_the_bound_too(gw, headers, start_gateway) -> None:
    _publish_cold(gw)
    gateway = start_gateway("--max-parked", "0", "--poll-interval", "0.1")
    gateway.wait_version(gw.control_plane.table["version"])
    response = httpx.post(
        gateway.url + "/models/m-cold/production/v1/chat/completions",
        json={"model": "m-cold", "messages": []},
        headers=headers,
    )
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    error = response.json()["error"]
    assert (error["code"], error["bound"], error["limit"]) == (
        "parked_queue_full",
        "max_parked_requests",
        0,
    )
    assert gw.control_plane.wake_calls == [("m-cold", "d-1")]  # refused, but still woken


@pytest.mark.parametrize(
    ("field", "value"),
    [("park_timeout_s", -1.0), ("park_timeout_s", float("nan")), ("max_parked_requests", -1)],
)
def test_bad_bounds_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        GatewaySettings("http://cp.test", **{field: value})  # type: ignore[arg-type]


def _parked_gauge(gateway_url: str, headers: dict[str, str]) -> str:
    """``parked`` once the gateway's metrics show two requests parked, else ``""``."""
    text = httpx.get(gateway_url + "/metrics", headers=headers).text
    for line in text.splitlines():
        if line.startswith("plinth_gateway_parked_requests ") and float(line.split()[1]) >= 2:
            return "parked"
    return ""
