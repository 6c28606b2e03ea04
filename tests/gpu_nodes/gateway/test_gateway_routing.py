"""Path grammar, host routing, auth, 404 / 405 / 413, the async_predict relay, wake and
request ids, end to end."""

from __future__ import annotations

import httpx
import pytest

from gpu_nodes.gateway import hash_api_key

pytestmark = pytest.mark.integration


def _replica_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["replica"]


@pytest.mark.parametrize(
    ("path", "replicas"),
    [
        ("/models/m-echo/production/predict", {"prod-a", "prod-b"}),
        ("/models/m-echo/development/predict", {"dev"}),
        ("/models/m-echo/environments/staging/predict", {"dev"}),
        ("/models/m-echo/environments/production/predict", {"prod-a", "prod-b"}),
        ("/models/m-echo/deployment/d-dev/predict", {"dev"}),
        ("/models/m-echo/deployment/d-prod/predict", {"prod-a", "prod-b"}),
    ],
)
def test_each_path_form_reaches_its_deployment(gw, headers, path, replicas) -> None:
    seen = set()
    for _ in range(4):
        response = httpx.post(gw.gateway.url + path, json={"x": 1}, headers=headers)
        seen.add(_replica_of(response))
        assert response.json()["input"] == {"x": 1}
    assert seen == replicas  # both production replicas take turns when idle


def test_host_based_routing_without_model_prefix(gw, headers) -> None:
    host = {"Host": "model-m-echo.plinth.localhost:8801", **headers}
    assert (
        _replica_of(httpx.post(gw.gateway.url + "/development/predict", json={}, headers=host))
        == "dev"
    )
    other = httpx.post(gw.gateway.url + "/development/predict", json={}, headers=headers)
    assert other.status_code == 404  # without the model host, the prefix is required


def test_auth_none_wrong_api_key_and_bearer(gw, api_key) -> None:
    url = gw.gateway.url + "/models/m-echo/production/predict"
    missing = httpx.post(url, json={})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
    assert "Api-Key" in missing.json()["error"]["message"]
    wrong = httpx.post(url, json={}, headers={"Authorization": "Api-Key nope-not-a-key"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"] == "invalid API key"
    malformed = httpx.post(url, json={}, headers={"Authorization": f"Basic {api_key}"})
    assert malformed.status_code == 401
    assert (
        httpx.post(url, json={}, headers={"Authorization": f"Api-Key {api_key}"}).status_code == 200
    )
    assert (
        httpx.post(url, json={}, headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    )
    assert api_key not in gw.gateway.log()
    # Unknown models answer 401 too when unauthenticated: no probing of what exists.
    assert (
        httpx.post(gw.gateway.url + "/models/nope/production/predict", json={}).status_code == 401
    )


@pytest.mark.parametrize("scheme", ["Api-Key", "Bearer"])
def test_the_stored_hash_of_a_key_is_not_a_key(gw, api_key, scheme) -> None:
    """The routing table publishes sha256(key) to every gateway: it must not open the door."""
    stored = hash_api_key(api_key)
    assert stored in gw.control_plane.table["api_key_hashes"]
    for path in ("/models/m-echo/production/predict", "/v1/models"):
        method = httpx.get if path == "/v1/models" else httpx.post
        kwargs = {} if path == "/v1/models" else {"json": {}}
        for sent in (stored, stored.upper()):
            answer = method(
                gw.gateway.url + path, headers={"Authorization": f"{scheme} {sent}"}, **kwargs
            )
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json()["error"]["message"] == "invalid API key"
    assert stored not in gw.gateway.log()


def test_api_key_is_not_forwarded_to_the_replica(gw, headers) -> None:
    response = httpx.post(
        gw.gateway.url + "/models/m-echo/development/predict",
        json={},
        headers={**headers, "X-Custom": "kept"},
    )
    assert response.status_code == 200
    # The echo model cannot see headers; the model server log has no key either.
    assert "pk-test" not in gw.replicas["dev"].log()


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/models/nope/production/predict", "model 'nope' not found"),
        ("/models/m-echo/environments/qa/predict", "environment 'qa' of model 'm-echo' not found"),
        ("/models/m-echo/environments/empty/predict", "has no deployment yet"),
        ("/models/m-echo/deployment/d-missing/predict", "deployment 'd-missing'"),
        ("/models/m-echo/production/explode", "no route"),
        ("/elsewhere", "no route"),
    ],
)
def test_unknown_targets_are_clear_404s(gw, headers, path, fragment) -> None:
    response = httpx.post(gw.gateway.url + path, json={}, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert fragment in response.json()["error"]["message"]


def test_body_limit_413_by_content_length_and_while_reading(gw, headers) -> None:
    url = gw.gateway.url + "/models/m-echo/production/predict"
    declared = httpx.post(url, content=b"x" * 5000, headers=headers)
    assert declared.status_code == 413
    assert "exceeds 4096 bytes" in declared.json()["error"]["message"]

    def chunked_body():
        for _ in range(10):
            yield b'{"pad": "' + b"y" * 1000 + b'"}'

    streamed = httpx.post(url, content=chunked_body(), headers=headers)
    assert streamed.status_code == 413
    assert httpx.post(url, json={"small": True}, headers=headers).status_code == 200


def test_methods_wake_and_async_predict(gw, headers) -> None:
    base = gw.gateway.url + "/models/m-echo/production"
    assert httpx.get(base + "/predict", headers=headers).status_code == 405
    # async_predict: the gateway resolves the environment and hands the body, unchanged, to
    # the control plane with its internal token (the control plane's tests cover the rest).
    queued = httpx.post(base + "/async_predict", content=b'{"model_input": 1}', headers=headers)
    assert (queued.status_code, queued.json()) == (201, {"request_id": "r1"})
    assert gw.control_plane.async_submits[-1] == ("m-echo", "d-prod", b'{"model_input": 1}')
    assert httpx.get(base + "/async_predict", headers=headers).status_code == 405
    woke = httpx.post(gw.gateway.url + "/models/m-echo/deployment/d-old/wake", headers=headers)
    assert woke.status_code == 202
    assert woke.json() == {"model_id": "m-echo", "deployment_id": "d-old", "status": "waking"}
    assert gw.control_plane.wake_calls == [("m-echo", "d-old")]
    assert gw.control_plane.auth_failures == 0


def test_request_id_generated_or_kept_and_passed_to_the_replica(gw, headers) -> None:
    url = gw.gateway.url + "/models/m-echo/development/predict"
    generated = httpx.post(url, json={}, headers=headers)
    assert len(generated.headers["x-request-id"]) >= 16
    kept = httpx.post(url, json={}, headers={**headers, "X-Request-Id": "gw-req-77"})
    assert kept.headers["x-request-id"] == "gw-req-77"
    assert "request_id=gw-req-77" in gw.replicas["dev"].log()
    assert f"request_id={generated.headers['x-request-id']}" in gw.replicas["dev"].log()
