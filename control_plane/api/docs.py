"""`/docs`: Swagger UI served from the installed `swagger-ui-bundle` package, never a CDN.

A self-hosted control plane often runs where the public internet is unreachable; FastAPI's
default page would load its JavaScript from a CDN and stay blank there. Asset URLs are
relative to the app's root path, so the page also works behind a path prefix (API Gateway).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"


def swagger_ui_assets() -> Path | None:
    """The bundled Swagger UI directory, or None when the package is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return Path(str(swagger_ui_path))


def install_offline_docs(app: FastAPI) -> None:
    """Serve `/docs` and its assets; create the app with ``docs_url=None, redoc_url=None``."""
    assets = swagger_ui_assets()
    if assets is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=assets), name="docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        if assets is None:
            message = (
                "Swagger UI assets are not installed (pip install swagger-ui-bundle);"
                " the API description itself is at /openapi.json"
            )
            return HTMLResponse(f"<p>{message}</p>", status_code=503)
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + str(app.openapi_url),
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )
