"""The API handler answers real API Gateway v2 (payload 2.0) events in process."""

from __future__ import annotations

import json
import os

import pytest

try:  # engineer D's control plane; skip (not fail) only until it lands
    import control_plane.app
    import control_plane.settings  # noqa: F401
except ImportError:  # pragma: no cover
    pytest.skip("control_plane.app is not available yet", allow_module_level=True)

from lambdas import api


@pytest.fixture
def handler(plinth_env):
    mangum = api.build_handler()
    yield mangum
    mangum.app.state.platform.close()


def test_healthz_through_api_gateway_v2(handler, http_api_event) -> None:
    response = handler(http_api_event("GET", "/healthz"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"status": "ok"}


def test_management_api_requires_a_key_and_accepts_the_bootstrap_key(
    handler, http_api_event, admin_key, plinth_env
) -> None:
    denied = handler(http_api_event("GET", "/v1/models"), None)
    assert denied["statusCode"] == 401
    assert json.loads(denied["body"])["error"]["code"] == "UNAUTHORIZED"
    allowed = handler(
        http_api_event("GET", "/v1/models", headers={"authorization": f"Api-Key {admin_key}"}), None
    )
    assert allowed["statusCode"] == 200
    body = json.loads(allowed["body"])
    assert (body["models"] if isinstance(body, dict) else body) == []
    assert (plinth_env / "plinth.db").is_file()  # embedded SQLite under PLINTH_STATE_DIR


def test_post_with_json_body_and_secret_value_never_returned(
    handler, http_api_event, admin_key
) -> None:
    auth = {"authorization": f"Bearer {admin_key}"}
    created = handler(
        http_api_event(
            "POST", "/v1/secrets", headers=auth, body={"name": "hf_token", "value": "s3cr3t-value"}
        ),
        None,
    )
    assert created["statusCode"] in (200, 201)
    listed = handler(http_api_event("GET", "/v1/secrets", headers=auth), None)
    assert listed["statusCode"] == 200
    assert "hf_token" in listed["body"] and "s3cr3t-value" not in listed["body"]


def test_module_handler_builds_once(plinth_env, http_api_event, monkeypatch) -> None:
    built = []
    original = api.build_handler

    def counting():
        built.append(1)
        return original()

    lazy = api.Lazy(counting)
    monkeypatch.setattr(api, "_mangum", lazy)
    try:
        for _ in range(3):
            assert api.handler(http_api_event("GET", "/healthz"), None)["statusCode"] == 200
        assert built == [1]
    finally:
        lazy.get().app.state.platform.close()


def test_internal_token_comes_from_secrets_manager_once_per_sandbox(
    plinth_env, http_api_event, monkeypatch
) -> None:
    import boto3

    from tests.support import cloud

    with cloud.moto_server() as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        secrets = boto3.client("secretsmanager")
        arn = secrets.create_secret(Name="plinth-internal-token", SecretString="int_from_sm")["ARN"]
        monkeypatch.setenv("PLINTH_INTERNAL_TOKEN_SECRET_ID", arn)
        mangum = api.build_handler()
        try:
            assert "int_from_sm" not in str(dict(os.environ))  # never in the environment
            # Rotated after the sandbox started: the sandbox keeps the token it read.
            secrets.put_secret_value(SecretId=arn, SecretString="int_rotated")
            for token, status in (("int_from_sm", 200), ("int_rotated", 401), ("wrong", 401)):
                headers = {"authorization": f"Bearer {token}"}
                answer = mangum(http_api_event("GET", "/v1/routing", headers=headers), None)
                assert answer["statusCode"] == status, (token, answer["body"])
        finally:
            mangum.app.state.platform.close()
