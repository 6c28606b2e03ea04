"""A plain Truss model (no engine) named on an OpenAI path gets an OpenAI-shaped error that says
how to call it, not the replica's bare `{"detail": "Not Found"}`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/models/m-echo/production/v1/chat/completions"]
)
def test_openai_path_on_a_model_class_deployment(
    gw: Any, headers: dict[str, str], path: str
) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    resp = httpx.post(gw.gateway.url + path, json=body, headers=headers, timeout=30)
    assert resp.status_code == 404
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert (
        "no OpenAI API" in error["message"]
        and "/models/m-echo/production/predict" in error["message"]
    )
