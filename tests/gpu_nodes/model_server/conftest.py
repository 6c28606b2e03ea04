"""Fixtures: real model server subprocesses over packages written into tmp dirs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gpu_nodes.model_server.testing import ModelServerProcess, write_package

ServeFactory = Callable[..., ModelServerProcess]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """``serve(code, config=None, files=None, wait="ready"|"live"|None, env=, secrets=)``."""
    started: list[ModelServerProcess] = []

    def start(
        model_code: str,
        config: dict[str, Any] | None = None,
        *,
        files: dict[str, str] | None = None,
        wait: str | None = "ready",
        env: dict[str, str] | None = None,
        secrets: dict[str, str] | None = None,
        name: str = "pkg",
    ) -> ModelServerProcess:
        package = write_package(tmp_path / name, model_code, config, files)
        secrets_dir = None
        if secrets is not None:
            secrets_dir = tmp_path / f"{name}-secrets"
            secrets_dir.mkdir()
            for key, value in secrets.items():
                (secrets_dir / key).write_text(value)
        server = ModelServerProcess(
            package, log_path=tmp_path / f"{name}.log", env=env, secrets_dir=secrets_dir
        )
        started.append(server)
        if wait == "ready":
            server.wait_ready()
        elif wait == "live":
            server.wait_live()
        return server

    yield start
    for server in started:
        server.stop()
