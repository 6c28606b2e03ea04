"""The gateway's own OpenAPI document: the inference paths clients call (no model names).

Static and the same for every gateway: the paths are templates (`{model_id}`, `{env}`), so the
document tells an API user how to call any model without revealing which models exist.
"""

from __future__ import annotations

from typing import Any

OPENAPI_PATH = "/openapi.json"

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERRORS = {
    str(status): {
        "description": why,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, why in (
        (401, "missing or unknown API key (UNAUTHORIZED)"),
        (404, "unknown model, environment or deployment"),
        (413, "body over the gateway's limit"),
        (502, "the replica failed before answering (UPSTREAM_ERROR)"),
        (
            503,
            "no replica became ready within park_timeout_s (NO_REPLICA_AVAILABLE), or"
            " max_parked_requests already parked (PARKED_QUEUE_FULL); both carry Retry-After"
            " and name the bound in error.bound / error.limit",
        ),
        (504, "the model did not answer within its predict timeout"),
    )
}
_MODEL_ID = {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SELECTORS = {
    "production": [],
    "development": [],
    "environments/{env}": [
        {"name": "env", "in": "path", "required": True, "schema": {"type": "string"}}
    ],
    "deployment/{deployment_id}": [
        {"name": "deployment_id", "in": "path", "required": True, "schema": {"type": "string"}}
    ],
}
_ANY_JSON: dict[str, Any] = {"content": {"application/json": {"schema": {}}}}


def _operation(summary: str, parameters: list[dict[str, Any]], ok: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": parameters,
        "requestBody": {"required": True, **_ANY_JSON},
        "responses": {ok: {"description": "the model's answer", **_ANY_JSON}, **_ERRORS},
    }


def _model_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for selector, extra in _SELECTORS.items():
        parameters = [_MODEL_ID, *extra]
        base = f"/models/{{model_id}}/{selector}"
        paths[f"{base}/predict"] = {
            "post": _operation(
                f"Predict ({selector}); streams when the model does", parameters, "200"
            )
        }
        paths[f"{base}/async_predict"] = {
            "post": _operation(f"Queue an async request ({selector})", parameters, "201")
        }
        route = {"name": "route", "in": "path", "required": True, "schema": {"type": "string"}}
        paths[f"{base}/sync/{{route}}"] = {
            "post": _operation(
                f"Any route of the replica ({selector}), any method: `sync/v1/chat/completions`"
                " on a custom server or a Model class with OpenAI methods; bare `sync` is predict",
                [*parameters, route],
                "200",
            )
        }
        paths[f"{base}/wake"] = {
            "post": _operation(
                f"Bring a scaled-to-zero deployment up ({selector})", parameters, "202"
            )
        }
    return paths


def _openai_paths() -> dict[str, Any]:
    models = {
        "summary": "OpenAI: the models this key can call with the OpenAI API",
        "responses": {"200": {"description": "model list", **_ANY_JSON}, **_ERRORS},
    }
    paths: dict[str, Any] = {"/v1/models": {"get": models}}
    for name in ("chat/completions", "completions", "embeddings", "messages", "responses"):
        summary = f"OpenAI {name}: the body's `model` is a model name (`name@environment`) or id"
        paths[f"/v1/{name}"] = {"post": _operation(summary, [], "200")}
    return paths


def gateway_openapi() -> dict[str, Any]:
    request_id = {
        "name": "request_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    async_request = {
        "get": {
            "summary": "An async request's status (and its result while kept)",
            "parameters": [request_id],
            "responses": {"200": {"description": "status", **_ANY_JSON}, **_ERRORS},
        },
        "delete": {
            "summary": "Cancel a queued async request (409 once it started)",
            "parameters": [request_id],
            "responses": {"200": {"description": "canceled", **_ANY_JSON}, **_ERRORS},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Plinth gateway (inference)",
            "version": "0.1.0",
            "description": "Baseten's inference paths and the OpenAI API. The same paths work "
            "without /models/{model_id} under a model-{model_id}.<domain> host.",
        },
        "paths": {
            **_model_paths(),
            "/async_request/{request_id}": async_request,
            **_openai_paths(),
        },
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Api-Key <key>`",
                },
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"ApiKey": []}, {"Bearer": []}],
    }
