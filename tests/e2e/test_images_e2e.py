"""`plinth up --runtime container` end to end: each push is built as an OCI image, pushed to
the platform's loopback registry, recorded by digest, pulled back and run as a replica in its
root filesystem, and answers through the gateway. About 2-3 minutes on 2 cores with the base
image cached (tests/support/images.py)."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gpu_nodes.engine.tiny_model import TinyModelSpec, ensure_tiny_model
from plinth.local import LocalPlatform, start_platform
from tests.e2e.conftest import Cli
from tests.support.images import missing_image_tools, shared_image_cache
from tests.support.servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_image_tools()), reason="buildah/mmdebstrap/registry missing"),
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SYSTEM_PACKAGE_MODEL = """
import json
import subprocess
from pathlib import Path


class Model:
    def __init__(self, **kwargs):
        pass

    def predict(self, model_input):
        jq = subprocess.run(
            ["jq", "-c", ".x * 2"], input=json.dumps(model_input), capture_output=True, text=True
        )
        return {"jq": jq.stdout.strip(), "built": Path("/opt/built.txt").read_text().strip()}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    state_dir = tmp_path_factory.mktemp("plinth-container-state")
    os.environ["PLINTH_IMAGE_CACHE_DIR"] = str(shared_image_cache())  # inherited by the platform
    try:
        running = start_platform(
            state_dir,
            "127.0.0.1",
            free_port(),
            free_port(),
            runtime="container",
            registry_port=free_port(),
        )
    finally:
        os.environ.pop("PLINTH_IMAGE_CACHE_DIR", None)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cli(platform: LocalPlatform) -> Cli:
    return Cli(platform.state_dir)


@pytest.fixture(scope="module")
def api(platform: LocalPlatform) -> Iterator[httpx.Client]:
    ep = platform.endpoints
    headers = {"Authorization": f"Api-Key {ep.api_key}"}
    with httpx.Client(base_url=ep.control_plane_url, headers=headers, timeout=30) as client:
        yield client


def _production(api: httpx.Client, name: str) -> tuple[str, dict]:
    [model] = [m for m in api.get("/v1/models").json()["models"] if m["name"] == name]
    deployments = api.get(f"/v1/models/{model['id']}/deployments").json()["deployments"]
    [dep] = [d for d in deployments if d["id"] == model["production_deployment_id"]]
    return model["id"], dep


def _predict(platform: LocalPlatform, model_id: str, body: dict) -> httpx.Response:
    ep = platform.endpoints
    return httpx.post(
        f"{ep.gateway_url}/models/{model_id}/production/predict",
        json=body,
        headers={"Authorization": f"Api-Key {ep.api_key}"},
        timeout=60,
    )


def _assert_runs_its_image(platform: LocalPlatform, dep: dict, model_id: str) -> None:
    registry = platform.pids().get("registry")
    assert registry, "the platform runs no registry"
    assert re.fullmatch(r"127\.0\.0\.1:\d+/plinth/models/\w+@sha256:[0-9a-f]{64}", dep["image"])
    assert f"/plinth/models/{model_id}@" in dep["image"]


def test_hello_and_with_requirements_run_from_their_images(
    platform: LocalPlatform, cli: Cli, api: httpx.Client
) -> None:
    for example, body, check in [
        ("hello", {"x": 3}, lambda answer: answer is not None),
        ("with-requirements", {"rows": [["ada", 3]]}, lambda a: a["tabulate_version"] == "0.10.0"),
    ]:
        out = cli("push", str(EXAMPLES / example), "--promote")
        assert "ACTIVE" in out.stdout, out.stdout
        model_id, dep = _production(api, example)
        _assert_runs_its_image(platform, dep, model_id)
        answer = _predict(platform, model_id, body)
        assert answer.status_code == 200, answer.text
        assert check(answer.json()), answer.json()


def test_streaming_example_streams_from_its_image(
    platform: LocalPlatform, cli: Cli, api: httpx.Client
) -> None:
    cli("push", str(EXAMPLES / "streaming"), "--promote")
    model_id, dep = _production(api, "streaming")
    _assert_runs_its_image(platform, dep, model_id)
    ep = platform.endpoints
    chunks: list[bytes] = []
    with httpx.stream(
        "POST",
        f"{ep.gateway_url}/models/{model_id}/production/predict",
        json={"n": 5},
        headers={"Authorization": f"Api-Key {ep.api_key}"},
        timeout=60,
    ) as resp:
        assert resp.status_code == 200
        chunks.extend(resp.iter_raw())
    assert len(chunks) >= 2, "the response arrived in one piece: not streamed"


def test_weights_reach_a_container_replica(
    platform: LocalPlatform, cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    source = Path("/tmp/plinth-example-weights")  # what examples/with-weights names
    source.mkdir(parents=True, exist_ok=True)
    (source / "notes.txt").write_text("hello from the weights\n")
    out = cli("push", str(EXAMPLES / "with-weights"), "--promote")
    assert "ACTIVE" in out.stdout, out.stdout
    model_id, dep = _production(api, "with-weights")
    _assert_runs_its_image(platform, dep, model_id)
    answer = _predict(platform, model_id, {"file": "notes.txt"})
    assert answer.status_code == 200, answer.text
    notes = answer.json()["files"]["/app/model_cache/example/notes.txt"]
    assert notes["head"] == "hello from the weights\n"


def test_system_packages_and_build_commands_are_in_the_image(
    platform: LocalPlatform, cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    package = tmp_path / "with-apt"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(textwrap.dedent(SYSTEM_PACKAGE_MODEL))
    (package / "config.yaml").write_text(
        "model_name: with-apt\nsystem_packages: [jq]\n"
        "build_commands: ['echo built-by-a-step > /opt/built.txt']\n"
    )
    out = cli("push", str(package), "--promote")
    assert "ACTIVE" in out.stdout, out.stdout
    model_id, dep = _production(api, "with-apt")
    _assert_runs_its_image(platform, dep, model_id)
    assert f"image:          {dep['image']}" in out.stdout
    answer = _predict(platform, model_id, {"x": 21})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"jq": "42", "built": "built-by-a-step"}


@pytest.mark.slow  # the engine's runtime (torch, transformers) makes a large image
@pytest.mark.timeout(1500)
def test_tiny_llm_serves_openai_from_its_image(
    platform: LocalPlatform, cli: Cli, api: httpx.Client, tmp_path: Path
) -> None:
    package = tmp_path / "tiny-llm"
    shutil.copytree(EXAMPLES / "tiny-llm", package, ignore=shutil.ignore_patterns("weights"))
    ensure_tiny_model(package / "weights", TinyModelSpec(train_steps=0))
    out = cli("push", str(package), "--promote")
    assert "ACTIVE" in out.stdout, out.stdout
    model_id, dep = _production(api, "tiny-llm")
    _assert_runs_its_image(platform, dep, model_id)
    ep = platform.endpoints
    body = {"model": "tiny-llm", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    resp = httpx.post(
        f"{ep.gateway_url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Api-Key {ep.api_key}"},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["role"] == "assistant"
