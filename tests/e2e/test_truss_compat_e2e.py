"""Truss compatibility end to end, on a running `plinth up`: what a Truss user does on day one.

`plinth push --model-name`, a Model class with OpenAI-style methods called with the OpenAI SDK
through the gateway, warnings for config fields Plinth cannot honour, and a custom server
(Truss `docker_server`) pushed and called through predict and `sync/...`.
"""

from __future__ import annotations

import subprocess
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
