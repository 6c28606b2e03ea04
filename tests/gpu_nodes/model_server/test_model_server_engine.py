"""Packages with an ``engine:`` section are served by the OpenAI engine app, same Truss routes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from gpu_nodes.model_server.testing import ModelServerProcess

pytestmark = pytest.mark.integration


def test_engine_package_is_delegated_to_the_openai_app(tmp_path: Path) -> None:
    pytest.importorskip("gpu_nodes.openai.server")
    pytest.importorskip("gpu_nodes.engine.tiny_model")
    weights = tmp_path / "tiny"
    # A small model, made in a child process so this test process stays free of torch.
    subprocess.run(
        [
            *(sys.executable, "-m", "gpu_nodes.engine.tiny_model", "--out", str(weights)),
            *("--hidden", "64", "--layers", "1", "--heads", "2", "--kv-heads", "1"),
            *("--intermediate", "128", "--vocab", "512"),
        ],
        check=True,
        timeout=180,
        capture_output=True,
    )
    package = tmp_path / "llm"
    package.mkdir()
    config = {
        "model_name": "tiny-llm",
        "engine": {"model_path": str(weights), "device": "cpu", "max_model_len": 256},
    }
    (package / "config.yaml").write_text(yaml.safe_dump(config))
    with ModelServerProcess(package, log_path=tmp_path / "llm.log") as server:
        server.wait_ready(timeout=120)
        assert httpx.get(server.url + "/").status_code == 200
        assert httpx.get(server.url + "/v1/models/model").status_code == 200
        reply = httpx.post(
            server.url + "/v1/chat/completions",
            json={
                "model": "tiny-llm",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
            headers={"X-Request-Id": "engine-req-1"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["object"] == "chat.completion"
        assert reply.headers["x-request-id"] == "engine-req-1"
