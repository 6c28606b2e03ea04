"""Cluster tier: an HTTP chunk cache in front of the origin, shared by every node of a cluster.

Same routes as the origin (``GET /chunks/<sha256>`` with Range, ``GET /manifests/<id>.json``,
``GET /stats``). A miss is filled from the origin once per hash however many nodes ask at the
same moment (an asyncio lock per hash), verified by sha256, and written atomically under
``<dir>/chunks/<h[:2]>/<h>``; a corrupt file in the directory is detected and refilled.

CLI: ``python -m gpu_nodes.weights.cluster_cache --dir D --origin URL --port P``. An origin of
``s3://BUCKET/PREFIX`` or ``gs://BUCKET/PREFIX`` fills misses straight from the weights bucket
with the pod's own identity (``gpu_nodes.weights.bucket_origin``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gpu_nodes.weights.bucket_origin import BucketOrigin, is_bucket_url
from plinth.contracts.exceptions import ManifestError
from plinth.contracts.http_ranges import (
    TransferStats,
    check_digest,
    parse_range,
    range_response,
)
from plinth.contracts.weights_manifest import parse_manifest

_FILL_ATTEMPTS = 4


class _Filler:
    """Single-flight fill of the directory from the origin, one lock per key."""

    def __init__(self, root: Path, origin: str, stats: TransferStats) -> None:
        self.root = root
        self.origin = origin.rstrip("/")
        self.stats = stats
        self._locks: dict[str, asyncio.Lock] = {}
        self.client: httpx.AsyncClient | None = None
        # s3:// or gs://: fill straight from the weights bucket with this pod's identity.
        self.bucket = BucketOrigin(origin) if is_bucket_url(origin) else None

    def path(self, kind: str, digest: str) -> Path:
        return self.root / kind / digest[:2] / digest

    async def ensure(self, kind: str, digest: str) -> bytes:
        """Verified bytes of a chunk / manifest, from disk or filled from the origin."""
        lock = self._locks.setdefault(f"{kind}:{digest}", asyncio.Lock())
        async with lock:
            path = self.path(kind, digest)
            data = await run_in_threadpool(_read_verified, path, kind, digest)
            if data is None:
                data = await self._fill(kind, digest)
                await run_in_threadpool(_write_atomic, path, data)
        return data

    async def _fill(self, kind: str, digest: str) -> bytes:
        if self.bucket is not None:
            return await self._fill_from_bucket(self.bucket, kind, digest)
        if self.client is None:
            raise HTTPException(503, "cluster cache is starting")
        url = f"{self.origin}/{kind}/{digest}" + (".json" if kind == "manifests" else "")
        last = "no attempt"
        for attempt in range(_FILL_ATTEMPTS):
            try:
                response = await self.client.get(url)
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if response.status_code == 404:
                    raise HTTPException(404, f"{kind[:-1]} {digest} not found at origin")
                if response.status_code == 200:
                    self.stats.pulled(len(response.content))
                    if _verifies(response.content, kind, digest):
                        return response.content
                    last = "origin sent bytes that do not verify"
                else:
                    last = f"HTTP {response.status_code}"
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        raise HTTPException(502, f"origin fill of {digest} failed: {last}")

    async def _fill_from_bucket(self, bucket: BucketOrigin, kind: str, digest: str) -> bytes:
        last = "no attempt"
        for attempt in range(_FILL_ATTEMPTS):
            try:
                data = await run_in_threadpool(bucket.read, kind, digest)
            except Exception as exc:  # the SDKs raise many kinds; retry them all
                last = type(exc).__name__
            else:
                if data is None:
                    raise HTTPException(404, f"{kind[:-1]} {digest} not found in the bucket")
                self.stats.pulled(len(data))
                if _verifies(data, kind, digest):
                    return data
                last = "the bucket holds bytes that do not verify"
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        raise HTTPException(502, f"bucket fill of {digest} failed: {last}")


def _verifies(data: bytes, kind: str, digest: str) -> bool:
    if kind == "chunks":
        return hashlib.sha256(data).hexdigest() == digest
    try:
        return parse_manifest(data).manifest_id == digest
    except ManifestError:
        return False


def _read_verified(path: Path, kind: str, digest: str) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if _verifies(data, kind, digest):
        return data
    path.unlink(missing_ok=True)
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def create_cluster_cache_app(root: Path, origin_url: str) -> FastAPI:
    """The cluster cache app; counters at ``app.state.stats``."""
    stats = TransferStats()
    filler = _Filler(root, origin_url, stats)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
            filler.client = client
            yield
            filler.client = None

    app = FastAPI(title="plinth weights cluster cache", lifespan=lifespan)
    app.state.stats = stats

    @app.get("/chunks/{chunk_hash}")
    async def get_chunk(chunk_hash: str, request: Request) -> Response:
        data = await filler.ensure("chunks", check_digest(chunk_hash, "chunk hash"))
        span = parse_range(request.headers.get("range"), len(data))
        body = data if span is None else data[span[0] : span[1]]
        stats.served(len(body))
        return range_response(body, len(data), span)

    @app.get("/manifests/{name}")
    async def get_manifest(name: str) -> Response:
        data = await filler.ensure("manifests", check_digest(name.removesuffix(".json"), "id"))
        stats.served(len(data))
        return Response(data, media_type="application/json")

    @app.get("/stats")
    async def get_stats() -> dict[str, int]:
        return stats.as_dict()

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.weights.cluster_cache")
    parser.add_argument("--dir", type=Path, required=True, help="cache directory")
    parser.add_argument(
        "--origin",
        required=True,
        help="origin base URL, or s3://BUCKET[/PREFIX] / gs://BUCKET[/PREFIX] (read the bucket)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args(argv)
    app = create_cluster_cache_app(args.dir, args.origin)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
