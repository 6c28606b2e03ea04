"""Origin tier: serve the blob store's weight chunks and manifests over HTTP.

Routes: ``GET|HEAD /chunks/<sha256>`` (Range supported), ``GET /manifests/<id>.json``,
``GET /stats`` (requests and bytes served). This is what the local platform runs in front of
its blob store and what the agents and cluster caches fall back to.

CLI: ``python -m control_plane.weights.origin --blob-dir DIR --port P [--host 127.0.0.1]``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from control_plane.ports.blob import BlobNotFound, BlobStore
from plinth.contracts.http_ranges import (
    TransferStats,
    check_digest,
    parse_range,
    range_response,
)
from plinth.contracts.weights_manifest import chunk_key, manifest_key


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "NOT_FOUND", "message": f"{what} not found"}}, 404)


def create_origin_app(store: BlobStore) -> FastAPI:
    """FastAPI app serving ``store``'s chunks and manifests; counters at ``app.state.stats``."""
    app = FastAPI(title="plinth weights origin")
    stats = TransferStats()
    app.state.stats = stats

    @app.api_route("/chunks/{chunk_hash}", methods=["GET", "HEAD"])
    async def get_chunk(chunk_hash: str, request: Request) -> Response:
        key = chunk_key(check_digest(chunk_hash, "chunk hash"))
        info = await run_in_threadpool(store.head, key)
        if info is None:
            return _not_found(f"chunk {chunk_hash}")
        span = parse_range(request.headers.get("range"), info.size)
        if request.method == "HEAD":
            return Response(headers={"Content-Length": str(info.size), "Accept-Ranges": "bytes"})
        start, end = span if span is not None else (0, info.size)
        try:
            data = await run_in_threadpool(store.get_bytes, key, start=start, end=end)
        except BlobNotFound:
            return _not_found(f"chunk {chunk_hash}")
        stats.served(len(data))
        return range_response(data, info.size, span)

    @app.get("/manifests/{name}")
    async def get_manifest(name: str) -> Response:
        manifest_id = check_digest(name.removesuffix(".json"), "manifest id")
        try:
            data = await run_in_threadpool(store.get_bytes, manifest_key(manifest_id))
        except BlobNotFound:
            return _not_found(f"manifest {manifest_id}")
        stats.served(len(data))
        return Response(data, media_type="application/json")

    @app.get("/stats")
    async def get_stats() -> dict[str, int]:
        return stats.as_dict()

    return app


def main(argv: Sequence[str] | None = None) -> int:
    from control_plane.adapters.dir_blob import DirectoryBlobStore

    parser = argparse.ArgumentParser(prog="python -m control_plane.weights.origin")
    parser.add_argument("--blob-dir", type=Path, required=True, help="DirectoryBlobStore root")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args(argv)
    app = create_origin_app(DirectoryBlobStore(args.blob_dir))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
