"""The GPU-node plane's error base, and OpenAI's error body (rendered here only).

Every package of the plane (gateway, model server, engine, OpenAI layer, weights) roots its
errors at :class:`GpuNodeError`. This module imports nothing heavier than the project-wide
base, so the engine (a leaf) can import it too.
"""

from __future__ import annotations

from plinth.exceptions import PlinthError


class GpuNodeError(PlinthError):
    """Base of every error raised on purpose inside a cluster (plane base)."""


def openai_error_body(
    message: str, *, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``.

    Both the gateway (for its own errors on OpenAI paths) and the OpenAI server render with it.
    """
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
