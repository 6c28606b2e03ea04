"""Helpers shared by the control-plane API tests (conftest and test modules import them)."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from control_plane.settings import Settings
from control_plane.wiring import Platform
from plinth.spec.archive import ArchiveInfo, create_archive
from tests.support.servers import UvicornThread

ADMIN_KEY = "pl_test-admin-key"
INTERNAL_TOKEN = "int_test-token"

MODEL_CODE = """
from typing import Any


class Model:
    def __init__(self, config: dict, secrets: Any) -> None:
        self._secrets = secrets
        self._config = config

    def load(self) -> None:
        if self._config.get("model_metadata", {}).get("fail_load"):
            raise RuntimeError("load exploded on purpose")

    def predict(self, model_input: dict) -> dict:
        declared = self._config.get("secrets") or {}
        greeting = self._secrets["greeting"] if "greeting" in declared else None
        version = self._config["model_metadata"].get("version")
        return {"doubled": 2 * model_input["x"], "greeting": greeting, "version": version}
"""


class LiveServer(UvicornThread):
    """uvicorn serving ``app`` in a thread on a free loopback port (lifespan on)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app, log_level="warning", name="control plane")


@dataclass
class RunningControlPlane:
    platform: Platform
    server: LiveServer
    client: httpx.Client  # authenticated with the admin key

    @property
    def url(self) -> str:
        return self.server.url


def make_settings(state_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": state_dir,
        "bootstrap_api_key": ADMIN_KEY,
        "internal_token": INTERNAL_TOKEN,
        "reconcile_interval_s": 0.2,
        "build_poll_interval_s": 0.1,
        "run_background_workers": False,
    }
    values.update(overrides)
    return Settings(**values)


def write_package(
    root: Path,
    name: str = "doubler",
    *,
    requirements: list[str] | None = None,
    secrets: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """A Truss-layout package directory whose model doubles ``x``."""
    package = root / name
    (package / "model").mkdir(parents=True, exist_ok=True)
    (package / "model" / "model.py").write_text(textwrap.dedent(MODEL_CODE))
    lines = [f"model_name: {name}", "resources:", "  cpu: '1'", "  memory: 512Mi"]
    lines.append(f"requirements: {requirements or []}")
    if secrets:
        lines.append("secrets:")
        lines.extend(f"  {secret}: null" for secret in secrets)
    if metadata:
        lines.append("model_metadata:")
        lines.extend(f"  {key}: {value!r}" for key, value in metadata.items())
    (package / "config.yaml").write_text("\n".join(lines) + "\n")
    return package


def build_archive(package: Path, dest_dir: Path) -> ArchiveInfo:
    dest_dir.mkdir(parents=True, exist_ok=True)
    return create_archive(package, dest_dir / f"{package.name}.tar.gz")


def config_of(package: Path) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load((package / "config.yaml").read_text())
    return loaded


def upload_and_push(
    client: httpx.Client, package: Path, work_dir: Path, **push_fields: Any
) -> dict[str, Any]:
    info = build_archive(package, work_dir)
    response = client.put(f"/v1/archives/{info.sha256}", content=info.path.read_bytes())
    assert response.status_code == 201, response.text
    body = {
        "model_name": package.name,
        "archive_sha256": info.sha256,
        "config": config_of(package),
        **push_fields,
    }
    response = client.post("/v1/deployments", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for(
    probe: Callable[[], Any], *, timeout_s: float = 60.0, interval_s: float = 0.2, what: str = ""
) -> Any:
    """Poll ``probe`` until it returns a truthy value; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def start_control_plane(
    state_dir: Path, **overrides: Any
) -> tuple[RunningControlPlane, Callable[[], None]]:
    """A control plane on loopback and the function that stops it (server, workers, replicas)."""
    from control_plane.app import create_app

    settings = make_settings(state_dir, **overrides)
    platform = Platform(settings)
    server = LiveServer(create_app(settings, platform=platform)).start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Api-Key {ADMIN_KEY}"}, timeout=30
    )
    running = RunningControlPlane(platform, server, client)

    def stop() -> None:
        client.close()
        server.stop()
        platform.close()

    return running, stop
