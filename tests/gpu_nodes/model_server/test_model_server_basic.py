"""Truss Model semantics over HTTP: init kwargs, secrets, environment, package paths, errors."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration

BASIC_MODEL = """
import os

from model.helper import double  # Truss layout: the package root is on sys.path
import bundled_lib               # bundled_packages_dir ("packages") is on sys.path

class Model:
    def __init__(self, config, data_dir, secrets, environment):
        self._config = config
        self._data_dir = data_dir
        self._secrets = secrets
        self._environment = environment
        self._greeting = None

    def load(self):
        self._greeting = (self._data_dir / "greeting.txt").read_text().strip()

    def predict(self, model_input):
        try:
            self._secrets["missing_token"]
        except KeyError as exc:
            missing = str(exc)
        try:
            self._secrets["never_declared"]
        except KeyError as exc:
            undeclared = str(exc)
        return {
            "doubled": double(model_input["x"]),
            "bundled": bundled_lib.VALUE,
            "greeting": self._greeting,
            "api_token": self._secrets["api_token"],
            "with_default": self._secrets["with_default"],
            "has_missing": "missing_token" in self._secrets,
            "missing_error": missing,
            "undeclared_error": undeclared,
            "environment": self._environment,
            "config_model_name": self._config["model_name"],
            "metadata": self._config["model_metadata"],
            "env_var": os.environ.get("PLINTH_TEST_VAR"),
        }
"""

BASIC_CONFIG = {
    "model_name": "basic-model",
    "model_metadata": {"example_model_input": {"x": 1}},
    "secrets": {"api_token": None, "with_default": "from-config", "missing_token": None},
    "environment_variables": {"PLINTH_TEST_VAR": "from-config"},
}

BASIC_FILES = {
    "model/helper.py": "def double(x):\n    return 2 * x\n",
    "packages/bundled_lib/__init__.py": "VALUE = 'bundled-ok'\n",
    "data/greeting.txt": "hello from data_dir\n",
}


def test_basic_model_with_secrets_and_environment(serve) -> None:
    server = serve(
        BASIC_MODEL,
        BASIC_CONFIG,
        files=BASIC_FILES,
        env={"PLINTH_ENVIRONMENT": "production"},
        secrets={"api_token": "s3cr3t-value"},
    )
    ready = httpx.get(f"{server.url}/v1/models/model")
    assert ready.status_code == 200
    assert ready.json()["model_name"] == "basic-model"
    assert ready.json()["ready"] is True
    assert httpx.get(f"{server.url}/").json() == {}

    response = httpx.post(f"{server.url}/v1/models/model:predict", json={"x": 21})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["doubled"] == 42
    assert body["bundled"] == "bundled-ok"
    assert body["greeting"] == "hello from data_dir"
    assert body["api_token"] == "s3cr3t-value"
    assert body["with_default"] == "from-config"
    assert body["has_missing"] is False
    assert "missing_token" in body["missing_error"]
    assert "not provided" in body["missing_error"]
    assert "never_declared" in body["undeclared_error"]
    assert "not declared" in body["undeclared_error"]
    assert body["environment"] == {"name": "production"}
    assert body["config_model_name"] == "basic-model"
    assert body["metadata"] == {"example_model_input": {"x": 1}}
    assert body["env_var"] == "from-config"
    assert "s3cr3t-value" not in server.log()


def test_init_receives_only_the_kwargs_it_names(serve) -> None:
    model = """
    class Model:
        def __init__(self, config):
            self._name = config["model_name"]

        def predict(self, model_input):
            return {"name": self._name, "echo": model_input}
    """
    server = serve(model, {"model_name": "only-config"})
    response = httpx.post(f"{server.url}/v1/models/model:predict", json=[1, "two", None])
    assert response.json() == {"name": "only-config", "echo": [1, "two", None]}


ERRORS_MODEL = """
import fastapi
from gpu_nodes.model_server import InputError

class Model:
    def predict(self, model_input):
        kind = model_input.get("kind")
        if kind == "input":
            raise InputError("field 'prompt' is required")
        if kind == "http":
            raise fastapi.HTTPException(status_code=422, detail="prompt too long")
        if kind == "unserializable":
            return {"value": object()}
        return {"ok": True}
"""


def test_request_errors_map_to_clear_statuses(serve) -> None:
    server = serve(ERRORS_MODEL)
    url = f"{server.url}/v1/models/model:predict"

    bad_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert "not valid JSON" in bad_json.json()["error"]
    assert "line 1 column 2" in bad_json.json()["error"]

    empty = httpx.post(url, content=b"")
    assert empty.status_code == 400
    assert "empty" in empty.json()["error"]

    user_input = httpx.post(url, json={"kind": "input"})
    assert user_input.status_code == 400
    assert user_input.json() == {"error": "field 'prompt' is required"}

    http_error = httpx.post(url, json={"kind": "http"})
    assert http_error.status_code == 422
    assert http_error.json() == {"error": "prompt too long"}

    unserializable = httpx.post(url, json={"kind": "unserializable"})
    assert unserializable.status_code == 500
    assert "cannot be sent as JSON" in unserializable.json()["error"]

    assert httpx.post(url, json={}).json() == {"ok": True}


def test_request_id_is_echoed_or_generated(serve) -> None:
    server = serve(ERRORS_MODEL)
    url = f"{server.url}/v1/models/model:predict"
    echoed = httpx.post(url, json={}, headers={"X-Request-Id": "req-abc-123"})
    assert echoed.headers["x-request-id"] == "req-abc-123"
    generated = httpx.post(url, json={})
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.headers["x-request-id"] != "req-abc-123"
    assert "request_id=req-abc-123" in server.log()
