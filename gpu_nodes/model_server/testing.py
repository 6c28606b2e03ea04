"""Helpers to run real model server processes (tests, benchmarks, other engineers' fixtures).

``ModelServerProcess`` starts ``python -m gpu_nodes.model_server`` on a free loopback port with its
output in a log file, waits (bounded) for it to answer, and always stops it on ``stop()``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import yaml


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def write_package(
    root: Path,
    model_code: str,
    config: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a Truss-layout package (config.yaml, model/model.py, extra files by relative path)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model").mkdir(exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config or {"model_name": root.name}))
    (root / "model" / "model.py").write_text(textwrap.dedent(model_code))
    for relative, content in (files or {}).items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return root


class ModelServerProcess:
    def __init__(
        self,
        model_dir: Path,
        *,
        log_path: Path,
        env: dict[str, str] | None = None,
        secrets_dir: Path | None = None,
        python: str = sys.executable,
        host: str = "127.0.0.1",
    ) -> None:
        self.model_dir = model_dir
        self.log_path = log_path
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        command = [python, "-m", "gpu_nodes.model_server", "--model-dir", str(model_dir)]
        command += ["--port", str(self.port), "--host", host]
        if secrets_dir is not None:
            command += ["--secrets-dir", str(secrets_dir)]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log_file = log_path.open("wb")
        self.process = subprocess.Popen(
            command, stdout=self._log_file, stderr=subprocess.STDOUT, env=full_env
        )

    def wait_live(self, timeout: float = 30.0) -> None:
        """Wait until ``GET /`` answers (the process serves; the model may still be loading)."""
        self._wait_for(lambda r: r.status_code == 200, "/", timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        self._wait_for(lambda r: r.status_code == 200, "/v1/models/model", timeout)

    def _wait_for(self, accept: Any, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"model server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                if accept(httpx.get(self.url + path, timeout=2.0)):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"model server {self.url}{path} not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace)
        self._log_file.close()

    def __enter__(self) -> ModelServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
