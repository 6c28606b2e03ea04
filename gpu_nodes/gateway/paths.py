"""The inference path grammar, as pure functions.

``/models/{model_id}/{production | development | environments/{env} | deployment/{id}}/{action}``
where action is ``predict``, ``async_predict``, ``async_queue_status``, ``wake``,
``v1/...`` (OpenAI, forwarded as is) or ``sync/{route}`` (Baseten's: any route of the replica,
``sync/v1/...`` included, forwarded as ``/{route}`` with any method);
the same without the ``/models/{model_id}`` prefix under a ``model-{id}.{domain}`` host.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpu_nodes.gateway.routing import Selector

ACTIONS = ("predict", "async_predict", "async_queue_status", "wake")
SHORT_ENVIRONMENTS = ("production", "development")


@dataclass(frozen=True)
class InferencePath:
    model_id: str
    selector: Selector
    action: str  # "predict" | "async_predict" | "wake" | "openai" | "sync"
    # For "openai" and "sync": the replica path, e.g. "/v1/chat/completions"; "" for a bare
    # "sync", which is predict.
    upstream_path: str = ""


def model_id_from_host(host: str | None, domain: str) -> str | None:
    """``model-abc.plinth.localhost:8801`` -> ``abc`` (None for any other host)."""
    if not host:
        return None
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    suffix = "." + domain.lower()
    hostname = hostname.lower()
    if not hostname.startswith("model-") or not hostname.endswith(suffix):
        return None
    model_id = hostname[len("model-") : -len(suffix)]
    return model_id or None


def _split_selector(segments: list[str]) -> tuple[Selector, list[str]] | None:
    if not segments:
        return None
    head = segments[0]
    if head in SHORT_ENVIRONMENTS:
        return Selector("environment", head), segments[1:]
    if head == "environments" and len(segments) >= 2 and segments[1]:
        return Selector("environment", segments[1]), segments[2:]
    if head == "deployment" and len(segments) >= 2 and segments[1]:
        return Selector("deployment", segments[1]), segments[2:]
    return None


def parse_model_path(model_id: str, segments: list[str]) -> InferencePath | None:
    """Parse what follows the model (``production/predict``, ``deployment/d1/v1/models``...)."""
    split = _split_selector(segments)
    if split is None:
        return None
    selector, rest = split
    if len(rest) == 1 and rest[0] in ACTIONS:
        return InferencePath(model_id, selector, rest[0])
    if len(rest) >= 2 and rest[0] == "v1":
        return InferencePath(model_id, selector, "openai", "/" + "/".join(rest))
    if rest and rest[0] == "sync":
        upstream = "/" + "/".join(rest[1:]) if len(rest) > 1 else ""
        return InferencePath(model_id, selector, "sync", upstream)
    return None


def parse_inference_path(path: str, host_model_id: str | None) -> InferencePath | None:
    segments = [segment for segment in path.split("/") if segment]
    if host_model_id is not None:
        return parse_model_path(host_model_id, segments)
    if len(segments) >= 2 and segments[0] == "models":
        return parse_model_path(segments[1], segments[2:])
    return None
