"""Replica choice, streaming, failures, parking at zero replicas, and a control plane outage."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gpu_nodes.gateway import hash_api_key
from gpu_nodes.model_server.testing import ModelServerProcess
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError("condition not met in time")


def test_least_outstanding_replica_is_chosen(gw, headers, tmp_path: Path) -> None:
    url = gw.gateway.url + "/models/m-echo/production/predict"
    gate = tmp_path / "gate"
    hold = {"op": "hold", "gate": str(gate)}
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(httpx.post, url, json=hold, headers=headers, timeout=30)
        busy = _wait_for(
            lambda: next(
                (n for n in ("prod-a", "prod-b") if Path(f"{gate}.{n}.started").exists()), None
            )
        )
        (idle,) = {"prod-a", "prod-b"} - {busy}
        seen = {httpx.post(url, json={}, headers=headers).json()["replica"] for _ in range(6)}
        assert seen == {idle}  # every quick request avoided the replica with one outstanding
        gate.touch()
        assert held.result().json()["replica"] == busy
    # Idle again: ties go round robin across both.
    seen = {httpx.post(url, json={}, headers=headers).json()["replica"] for _ in range(4)}
    assert seen == {"prod-a", "prod-b"}


def test_stream_passes_through_incrementally(gw, headers, tmp_path: Path) -> None:
    gate = tmp_path / "stream-gate"
    lines = []
    with httpx.stream(
        "POST",
        gw.gateway.url + "/models/m-echo/development/predict",
        json={"op": "stream", "gate": str(gate)},
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            lines.append(line)
            if line == "first":
                gate.touch()  # the model only yields "second" after we saw "first"
    assert lines == ["first", "second"]


@pytest.fixture
def extra_replicas(gw, tmp_path: Path):
    """Start dedicated replicas of the echo package (stopped after the test)."""
    started: list[ModelServerProcess] = []

    def start(name: str) -> ModelServerProcess:
        server = ModelServerProcess(
            gw.package, log_path=tmp_path / f"{name}.log", env={"REPLICA_NAME": name}
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _single(gw, model_id: str, *replicas, status: str = "ACTIVE") -> None:
    from_conftest = gw.baseline_models()
    deployment = {
        "status": status,
        "engine": False,
        "predict_concurrency": 8,
        "replicas": [
            {"id": f"r{i}", "url": r if isinstance(r, str) else r.url, "ready": True}
            for i, r in enumerate(replicas)
        ],
    }
    from_conftest[model_id] = {
        "name": model_id,
        "environments": {"production": "d-1"},
        "deployments": {"d-1": deployment},
    }
    gw.publish(from_conftest)


def test_replica_failing_before_answering_is_502(gw, headers, extra_replicas) -> None:
    doomed = extra_replicas("doomed")
    doomed.wait_ready()
    _single(gw, "m-doom", doomed)
    response = httpx.post(
        gw.gateway.url + "/models/m-doom/production/predict", json={"op": "die"}, headers=headers
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "UPSTREAM_ERROR"
    assert "failed before answering" in response.json()["error"]["message"]


def test_replica_failing_mid_stream_breaks_the_client_stream(gw, headers, extra_replicas) -> None:
    doomed = extra_replicas("doomed-stream")
    doomed.wait_ready()
    _single(gw, "m-doom", doomed)
    received = []
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
        assert response.status_code == 200
        for line in response.iter_lines():
            received.append(line)
    assert received == ["partial"]


def test_connection_refused_is_retried_once_on_another_replica(gw, headers) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    _single(gw, "m-retry", dead_url, gw.replicas["prod-a"])
    url = gw.gateway.url + "/models/m-retry/production/predict"
    for _ in range(4):
        response = httpx.post(url, json={}, headers=headers)
        assert response.status_code == 200
        assert response.json()["replica"] == "prod-a"
    assert "retrying on another replica" in gw.gateway.log()
    _single(gw, "m-retry", dead_url)
    only_dead = httpx.post(url, json={}, headers=headers)
    assert only_dead.status_code == 502


def test_parked_request_is_served_after_a_replica_appears(gw, headers, extra_replicas) -> None:
    _single(gw, "m-cold", status="INACTIVE")
    woken = threading.Event()

    def wake(model_id: str, deployment_id: str) -> None:
        def bring_up() -> None:
            replica = extra_replicas("cold")
            replica.wait_ready()
            models = gw.baseline_models()
            models["m-cold"] = {
                "name": "m-cold",
                "environments": {"production": "d-1"},
                "deployments": {
                    "d-1": {
                        "status": "ACTIVE",
                        "replicas": [{"id": "c", "url": replica.url, "ready": True}],
                    }
                },
            }
            gw.control_plane.set_table(models)
            woken.set()

        threading.Thread(target=bring_up, daemon=True).start()

    gw.control_plane.on_wake = wake
    url = gw.gateway.url + "/models/m-cold/production/predict"
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(httpx.post, url, json={}, headers=headers, timeout=30) for _ in "ab"]
        results = [f.result() for f in futures]
    assert woken.is_set()
    assert [r.status_code for r in results] == [200, 200]
    assert {r.json()["replica"] for r in results} == {"cold"}
    assert gw.control_plane.wake_calls == [("m-cold", "d-1")]  # one wake for both parked


def test_park_times_out_with_503_and_failed_is_immediate(gw, headers, start_gateway) -> None:
    _single(gw, "m-cold", status="INACTIVE")
    short = start_gateway("--park-timeout", "0.5", "--poll-interval", "0.1")
    short.wait_version(gw.control_plane.table["version"])
    started = time.monotonic()
    response = httpx.post(
        short.url + "/models/m-cold/production/predict", json={}, headers=headers, timeout=30
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "NO_REPLICA_AVAILABLE"
    assert "became ready within 0.5s" in response.json()["error"]["message"]
    assert time.monotonic() - started < 10
    assert gw.control_plane.wake_calls == [("m-cold", "d-1")]

    _single(gw, "m-cold", status="FAILED")
    short.wait_version(gw.control_plane.table["version"])
    failed = httpx.post(short.url + "/models/m-cold/production/predict", json={}, headers=headers)
    assert failed.status_code == 503
    assert "FAILED" in failed.json()["error"]["message"]


def test_control_plane_down_serving_continues_and_cache_serves_a_restart(
    gw, headers, start_gateway
) -> None:
    url_path = "/models/m-echo/development/predict"
    gw.control_plane.stop()
    try:
        _wait_for(lambda: "routing table unavailable" in gw.gateway.log())
        for _ in range(5):
            response = httpx.post(gw.gateway.url + url_path, json={}, headers=headers)
            assert response.json()["replica"] == "dev"
        time.sleep(0.5)  # several failed polls (interval 0.1 s) ...
        assert gw.gateway.log().count("routing table unavailable") == 1  # ... one log line

        restarted = start_gateway("--cache-file", str(gw.root / "routing-cache.json"))
        restarted.wait_version()
        response = httpx.post(restarted.url + url_path, json={}, headers=headers)
        assert response.json()["replica"] == "dev"
        no_cache = start_gateway()
        assert no_cache.wait_live() == 503
        assert httpx.post(no_cache.url + url_path, json={}, headers=headers).status_code == 503
    finally:
        gw.control_plane.start()
    _wait_for(lambda: "routing table reachable again" in gw.gateway.log())


def test_a_miss_refreshes_the_table_at_once(gw, headers, start_gateway) -> None:
    """A model pushed or a key created after the last poll is served without waiting for it."""
    slow = start_gateway("--poll-interval", "60")
    slow.wait_version(gw.control_plane.table["version"])
    models = gw.baseline_models()
    models["m-new"] = {**models["m-echo"], "name": "new"}
    gw.control_plane.set_table(models)
    new_key = "pk-created-a-moment-ago"
    gw.control_plane.table["api_key_hashes"].append(hash_api_key(new_key))

    fresh = httpx.post(
        slow.url + "/models/m-new/production/predict", json={"x": 1}, headers=headers, timeout=10
    )
    assert fresh.status_code == 200, fresh.text
    keyed = httpx.post(
        slow.url + "/models/m-echo/production/predict",
        json={"x": 1},
        headers={"Authorization": f"Api-Key {new_key}"},
        timeout=10,
    )
    assert keyed.status_code == 200, keyed.text
    # Still a clear 404 for what really does not exist.
    missing = httpx.post(
        slow.url + "/models/m-none/production/predict", json={}, headers=headers, timeout=10
    )
    assert missing.status_code == 404
