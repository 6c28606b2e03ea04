"""Fixtures for weight delivery tests: loopback servers, a fault-injecting origin, test models."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from control_plane.adapters.dir_blob import DirectoryBlobStore
from control_plane.weights import mirror_source, open_source
from plinth.contracts.weights_manifest import Manifest, chunk_key, manifest_key
from tests.support.servers import free_port, serve


@dataclass
class FaultyOrigin:
    """Raw ASGI origin over a blob store that can fail, truncate, corrupt and throttle on demand.

    Counts every body byte it sends, per chunk hash, and records Range headers it was sent.
    """

    store: DirectoryBlobStore
    fail_next: int = 0
    failing_chunks: set[str] = field(default_factory=set)  # always 500 for these
    truncate_next: int = 0
    corrupt_next: int = 0
    piece: int = 64 << 10
    delay_per_piece_s: float = 0.0
    bytes_sent: int = 0
    bytes_by_chunk: collections.Counter[str] = field(default_factory=collections.Counter)
    requests_by_chunk: collections.Counter[str] = field(default_factory=collections.Counter)
    ranges: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self, name: str) -> bool:
        with self._lock:
            if getattr(self, name) > 0:
                setattr(self, name, getattr(self, name) - 1)
                return True
            return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path.startswith("/manifests/"):
            key = manifest_key(path.rsplit("/", 1)[-1].removesuffix(".json"))
            await self._send_blob(send, key, None, None)
            return
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            # uvicorn drops body sends after the client is gone; stop counting them as sent.
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await self._serve_chunk(path, headers, send, disconnected)
        finally:
            watcher.cancel()

    async def _serve_chunk(
        self, path: str, headers: dict[str, str], send: Any, disconnected: asyncio.Event
    ) -> None:
        chunk_hash = path.rsplit("/", 1)[-1]
        with self._lock:
            self.requests_by_chunk[chunk_hash] += 1
            if "range" in headers:
                self.ranges.append((chunk_hash, headers["range"]))
        if chunk_hash in self.failing_chunks or self._take("fail_next"):
            await _simple(send, 500, b"injected failure")
            return
        await self._send_blob(
            send, chunk_key(chunk_hash), chunk_hash, headers.get("range"), disconnected
        )

    async def _send_blob(
        self,
        send: Any,
        key: str,
        chunk_hash: str | None,
        range_header: str | None,
        disconnected: asyncio.Event | None = None,
    ) -> None:
        info = self.store.head(key)
        if info is None:
            await _simple(send, 404, b"missing")
            return
        start, end, status = 0, info.size, 200
        if range_header:
            first, _, last = range_header.removeprefix("bytes=").partition("-")
            start, end, status = int(first), (int(last) + 1 if last else info.size), 206
        data = self.store.get_bytes(key, start=start, end=end)
        if chunk_hash is not None and self._take("corrupt_next"):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        truncate = chunk_hash is not None and self._take("truncate_next")
        extra = [(b"content-range", f"bytes {start}-{end - 1}/{info.size}".encode())]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(data)).encode())]
                + (extra if status == 206 else []),
            }
        )
        limit = len(data) // 2 if truncate else len(data)
        for pos in range(0, limit, self.piece):
            if disconnected is not None and disconnected.is_set():
                return
            body = data[pos : min(pos + self.piece, limit)]
            await send({"type": "http.response.body", "body": body, "more_body": True})
            with self._lock:
                self.bytes_sent += len(body)
                if chunk_hash is not None:
                    self.bytes_by_chunk[chunk_hash] += len(body)
            if self.delay_per_piece_s:
                await asyncio.sleep(self.delay_per_piece_s)
        if truncate:
            # Return without finishing the body: uvicorn drops the connection mid-transfer.
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _simple(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def write_model(
    directory: Path, *, shards: int = 2, tensors: int = 10, mib: float = 1.0, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """Safetensors shards of float32 tensors (``mib`` MiB each) plus a config.json."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    elements = int(mib * (1 << 20) / 4)
    model: dict[str, dict[str, np.ndarray]] = {}
    for shard in range(shards):
        name = f"model-{shard:05d}-of-{shards:05d}.safetensors"
        model[name] = {
            f"layer{shard}.{i}.weight": rng.standard_normal(elements, dtype=np.float32)
            for i in range(tensors)
        }
        model[name][f"layer{shard}.norm"] = rng.standard_normal(64, dtype=np.float32)
        save_file(model[name], str(directory / name))
    (directory / "config.json").write_text('{"model_type": "tiny", "hidden": 64}')
    return model


def fine_tune(
    base: dict[str, dict[str, np.ndarray]], directory: Path, fraction: float = 0.1
) -> None:
    """Write a copy of ``base`` with ``fraction`` of the big tensors changed."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, tensors in base.items():
        keys = sorted(k for k in tensors if k.endswith(".weight"))
        changed = set(keys[:: max(1, round(1 / fraction))])
        tuned = {k: (v + 0.01 if k in changed else v) for k, v in tensors.items()}
        save_file(tuned, str(directory / name))
    (directory / "config.json").write_text('{"model_type": "tiny", "hidden": 64}')


@dataclass
class Platform:
    """A blob store with mirrored models and the helpers tests need around it."""

    root: Path
    store: DirectoryBlobStore

    def mirror(self, source: Path, mount_location: str = "/weights") -> Manifest:
        return mirror_source(open_source(str(source)), self.store, mount_location=mount_location)


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    return Platform(tmp_path, DirectoryBlobStore(tmp_path / "blobs"))


@pytest.fixture
def small_model(tmp_path: Path) -> Path:
    write_model(tmp_path / "model", shards=2, tensors=6, mib=1.5)
    return tmp_path / "model"


@pytest.fixture
def faulty_origin(platform: Platform) -> Iterator[tuple[FaultyOrigin, str]]:
    origin = FaultyOrigin(platform.store)
    with serve(origin) as url:
        yield origin, url


def tree(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def env_with_repo() -> dict[str, str]:
    """Environment for agent subprocesses: repo root on PYTHONPATH."""
    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{repo}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return env


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def wt() -> Any:
    """Helpers for test modules (importlib mode cannot import conftest by name)."""
    import types

    return types.SimpleNamespace(
        serve=serve,
        FaultyOrigin=FaultyOrigin,
        write_model=write_model,
        fine_tune=fine_tune,
        tree=tree,
        wait_for=wait_for,
        env=env_with_repo,
        free_port=free_port,
    )
