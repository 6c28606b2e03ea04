"""API entry point: API Gateway HTTP API (payload 2.0) -> Mangum -> the control plane app.

``handler`` is what ``infra.control_plane`` wires as ``lambdas.api.handler``. The app is
built once per sandbox, on the first event, with the lifespan off: the control plane wires
its adapters lazily, and background workers do not run inside a request-scoped Lambda.
"""

from __future__ import annotations

from typing import Any

from mangum import Mangum

from lambdas._lazy import Lazy


def build_handler() -> Mangum:
    """A Mangum adapter over ``create_app(settings)``: the environment and the internal token
    from Secrets Manager are read now, once per sandbox."""
    from control_plane.app import create_app
    from lambdas._settings import load_settings

    settings = load_settings()
    # No /weights here: chunks reach pods from the bucket through the in-cluster cache.
    app = create_app(settings, serve_weights_origin=False)
    if settings.bootstrap_api_key:
        # The lifespan that would store it never runs here; the key itself is never logged.
        app.state.platform.ensure_admin_key()
    return Mangum(app, lifespan="off")


_mangum: Lazy[Mangum] = Lazy(build_handler)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _mangum.get()(event, context)  # type: ignore[arg-type]
