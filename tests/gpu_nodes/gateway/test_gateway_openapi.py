"""The gateway describes its own inference paths (no model names) at /openapi.json."""

from __future__ import annotations

from typing import Any

import httpx
from openapi_spec_validator import validate


def test_openapi_is_valid_and_names_no_model(gw: Any) -> None:
    # No key: the document holds path templates only.
    response = httpx.get(gw.gateway.url + "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    paths = set(document["paths"])
    selectors = ("production", "development", "environments/{env}", "deployment/{deployment_id}")
    for selector in selectors:
        for action in ("predict", "async_predict", "wake"):
            assert f"/models/{{model_id}}/{selector}/{action}" in paths
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= paths
    assert "/async_request/{request_id}" in paths
    predict = document["paths"]["/models/{model_id}/production/predict"]["post"]
    assert {"401", "404", "502", "504"} <= set(predict["responses"])
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    published = gw.baseline_models()
    names = [model["name"] for model in published.values()] + list(published)
    assert not any(f'"{name}"' in response.text for name in names)
