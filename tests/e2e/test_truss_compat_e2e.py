"""Truss compatibility end to end, on a running `plinth up`: what a Truss user does on day one.

`plinth push --model-name`, a Model class with OpenAI-style methods called with the OpenAI SDK
through the gateway, warnings for config fields Plinth cannot honour, and a custom server
(Truss `docker_server`) pushed and called through predict and `sync/...`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from plinth.local import LocalPlatform

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

Cli = Callable[..., subprocess.CompletedProcess[str]]

NAMED_BY_CONFIG_MODEL = """
class Model:
    def __init__(self, config, **kwargs):
        self._name = config.get("model_name")

    def predict(self, model_input):
        return {"served_as": self._name}
"""


def write_package(root: Path, name: str, config: str, model: str) -> Path:
    package = root / name
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(model, encoding="utf-8")
    (package / "config.yaml").write_text(config, encoding="utf-8")
    return package


def model_id(api: httpx.Client, name: str) -> str:
    models = api.get("/v1/models").json()["models"]
    return str(next(m["id"] for m in models if m["name"] == name))


def test_push_model_name_names_a_nameless_package_and_warns(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    config = "requirements: []\nsystem_packages: [ffmpeg]\n"
    package = write_package(tmp_path, "nameless", config, NAMED_BY_CONFIG_MODEL)
    refused = cli("push", str(package), check=False)
    assert refused.returncode == 1
    assert "--model-name" in refused.stderr
    pushed = cli("push", str(package), "--model-name", "given-name", "--promote")
    # Accepted, deployed, and the field the local runtime cannot honour is named.
    assert (
        "warning: config field 'system_packages' (['ffmpeg']) is recorded but not honoured"
        in pushed.stderr
    )
    mid = model_id(api, "given-name")
    resp = gateway.post(f"/models/{mid}/production/predict", json={})
    assert resp.status_code == 200, resp.text
    # The replica's config (handed to Model(config=...)) carries the pushed name too.
    assert resp.json() == {"served_as": "given-name"}


def openai_client(platform: LocalPlatform, base_path: str) -> OpenAI:
    ep = platform.endpoints
    return OpenAI(base_url=ep.gateway_url + base_path, api_key=ep.api_key, max_retries=0)


def test_model_class_openai_methods_through_the_gateway(
    cli: Cli, api: httpx.Client, platform: LocalPlatform
) -> None:
    cli("push", str(EXAMPLES / "openai-methods"), "--promote")
    mid = model_id(api, "echo-chat")
    dep = api.get(f"/v1/models/{mid}/environments/production").json()["current_deployment"]
    messages = [{"role": "user", "content": "hi there"}]
    for base in (
        f"/models/{mid}/production/v1",
        f"/models/{mid}/production/sync/v1",
        f"/models/{mid}/deployment/{dep['id']}/v1",
        f"/models/{mid}/deployment/{dep['id']}/sync/v1",
        "/v1",  # the gateway's own OpenAI API: the body's model picks the deployment
    ):
        client = openai_client(platform, base)
        reply = client.chat.completions.create(model="echo-chat", messages=messages)
        assert reply.choices[0].message.content == "echo: hi there", base
        stream = client.chat.completions.create(model="echo-chat", messages=messages, stream=True)
        chunks = [chunk.choices[0].delta.content or "" for chunk in stream]
        assert "".join(chunks) == "echo: hi there" and len(chunks) == 4, base
    client = openai_client(platform, "/v1")
    assert client.embeddings.create(model="echo-chat", input="a").data[0].embedding
    assert "echo-chat" in [m.id for m in client.models.list().data]
    # A method the class lacks: the replica's OpenAI-shaped 404 reaches the SDK.
    with pytest.raises(openai.NotFoundError, match="defines no responses"):
        client.responses.create(model="echo-chat", input="hi")


CUSTOM_SERVER = '''
"""A custom server as a Truss user writes one: stdlib only, listening on $PORT."""
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self):
        if self.path == "/health/live":
            return self._send(200, {})
        if self.path == "/health/ready":  # ready a moment after start, as after a load
            return self._send(200 if time.monotonic() - STARTED > 1 else 503, {})
        self._send(200, {"route": self.path, "method": "GET"})

    def do_POST(self):
        body = self._body()
        if self.path == "/predict":
            return self._send(200, {
                "echo": body,
                "greeting": os.environ.get("GREETING"),
                "cwd_has_server": os.path.exists("server.py"),
                "python": sys.executable,
            })
        if self.path == "/v1/chat/completions":
            text = "custom: " + body["messages"][-1]["content"]
            message = {"role": "assistant", "content": text}
            return self._send(200, {
                "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            })
        self._send(404, {"error": "no route " + self.path})

    def log_message(self, *args):
        pass


ThreadingHTTPServer((os.environ["HOST"], int(sys.argv[1])), Handler).serve_forever()
'''

CUSTOM_CONFIG = """model_name: custom-echo
environment_variables:
  GREETING: hello
docker_server:
  start_command: python server.py "$PORT"
  server_port: 8000
  predict_endpoint: /predict
  readiness_endpoint: /health/ready
  liveness_endpoint: /health/live
"""


def test_custom_server_predict_sync_routes_and_openai(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, platform: LocalPlatform, tmp_path: Path
) -> None:
    package = tmp_path / "custom-echo"
    package.mkdir()
    (package / "server.py").write_text(CUSTOM_SERVER, encoding="utf-8")
    (package / "config.yaml").write_text(CUSTOM_CONFIG, encoding="utf-8")
    pushed = cli("push", str(package), "--promote")
    assert "warning" not in pushed.stderr  # docker_server is honoured
    mid = model_id(api, "custom-echo")
    resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    # predict reached predict_endpoint, in the package dir, with the deployment's env and venv.
    assert answer["echo"] == {"x": 1} and answer["greeting"] == "hello"
    assert answer["cwd_has_server"] and "/envs/" in answer["python"]
    # Baseten's sync/{route}: any route, any method, query string kept.
    routed = gateway.get(f"/models/{mid}/production/sync/some/route?q=1")
    assert routed.json() == {"route": "/some/route?q=1", "method": "GET"}
    client = openai_client(platform, f"/models/{mid}/production/sync/v1")
    reply = client.chat.completions.create(
        model="custom-echo", messages=[{"role": "user", "content": "yo"}]
    )
    assert reply.choices[0].message.content == "custom: yo"
    # The async path reaches predict_endpoint too (the worker calls the deployment's predict).
    queued = gateway.post(f"/models/{mid}/production/async_predict", json={"model_input": {"y": 2}})
    assert queued.status_code == 201, queued.text
    url = f"/async_request/{queued.json()['request_id']}"
    deadline = time.monotonic() + 60
    while (view := gateway.get(url).json())["status"] in ("QUEUED", "IN_PROGRESS"):
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert view["status"] == "SUCCEEDED" and view["data"]["echo"] == {"y": 2}, view
