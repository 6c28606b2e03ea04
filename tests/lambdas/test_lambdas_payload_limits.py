"""Nothing big passes through a Lambda: a 50 MB archive and a 1 GiB checkpoint.

API Gateway + Lambda cap a request and a response at ~6 MB. The API handler is driven with
real API Gateway v2 events (an httpx transport turns the client's requests into events), the
archive goes to S3 (a moto server) through presigned part URLs, and a 1 GiB checkpoint's
chunks reach a pod through the cluster cache reading the bucket; every event and every
response the handler sees is measured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpu_nodes.weights.cluster_cache import create_cluster_cache_app
from lambdas import api
from plinth.client import PlinthClient
from plinth.contracts.weights_manifest import (
    ChunkRef,
    FileEntry,
    Manifest,
    chunk_key,
    manifest_key,
)
from tests.support import cloud
from tests.support.servers import serve

pytestmark = pytest.mark.integration
LAMBDA_PAYLOAD_CAP = 6 * 1024 * 1024
ARCHIVE_BYTES = 50 * 1000 * 1000
CHECKPOINT_BYTES = 1 << 30
CHUNK_BYTES = 8 << 20


class LambdaGateway:
    """API Gateway v2 in front of the API handler: requests become events, responses come back;
    the largest event and response are kept."""

    def __init__(self, handler: Any, make_event: Any) -> None:
        self._handler = handler
        self._make_event = make_event
        self.largest_event = 0
        self.largest_response = 0
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        event = self._make_event(request.method, request.url.path, headers=dict(request.headers))
        event["rawQueryString"] = request.url.query.decode()
        if body:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
        self.largest_event = max(self.largest_event, len(json.dumps(event)))
        self.calls.append(f"{request.method} {request.url.path}")
        answer = self._handler(event, None)
        self.largest_response = max(self.largest_response, len(json.dumps(answer)))
        raw = answer.get("body") or ""
        content = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
        return httpx.Response(answer["statusCode"], headers=answer.get("headers"), content=content)


@pytest.fixture
def bucket(plinth_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    with cloud.moto_server() as endpoint:
        for name, value in {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(name, value)
        import boto3

        s3 = boto3.client("s3")
        name = f"plinth-{uuid.uuid4().hex[:10]}"
        s3.create_bucket(Bucket=name)
        monkeypatch.setenv("PLINTH_BLOB", "s3")
        monkeypatch.setenv("PLINTH_BLOB_BUCKET", name)
        monkeypatch.setenv("PLINTH_ARCHIVE_MULTIPART_THRESHOLD_BYTES", str(16 << 20))
        monkeypatch.setenv("PLINTH_ARCHIVE_PART_BYTES", str(16 << 20))
        yield s3, name


@pytest.fixture
def gateway(bucket: tuple[Any, str], http_api_event: Any) -> Iterator[LambdaGateway]:
    mangum = api.build_handler()
    yield LambdaGateway(mangum, http_api_event)
    mangum.app.state.platform.close()


def test_a_50_mb_archive_is_pushed_without_a_big_lambda_payload(
    gateway: LambdaGateway, bucket: tuple[Any, str], admin_key: str, tmp_path: Path
) -> None:
    s3, name = bucket
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(os.urandom(ARCHIVE_BYTES))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    transport = httpx.MockTransport(gateway)
    with PlinthClient("https://api.example", admin_key, transport=transport) as client:
        assert client.upload_archive(archive, sha)
        assert client.archive_exists(sha)
    assert gateway.calls == [
        f"POST /v1/archives/{sha}/uploads",
        f"POST /v1/archives/{sha}/uploads/{gateway.calls[1].split('/')[-2]}/complete",
        f"HEAD /v1/archives/{sha}",
    ]
    stored = s3.head_object(Bucket=name, Key=f"archives/{sha}.tar.gz")
    assert stored["ContentLength"] == ARCHIVE_BYTES
    assert gateway.largest_event < 16 * 1024 and gateway.largest_response < 16 * 1024
    assert max(gateway.largest_event, gateway.largest_response) < LAMBDA_PAYLOAD_CAP


def _zero_checkpoint_manifest() -> tuple[Manifest, bytes]:
    """A 1 GiB checkpoint of zeros: 128 chunks of 8 MiB sharing one hash (nothing is read
    from disk; the file's sha256 is computed over the same block 128 times)."""
    block = bytes(CHUNK_BYTES)
    chunk_hash = hashlib.sha256(block).hexdigest()
    whole = hashlib.sha256()
    for _ in range(CHECKPOINT_BYTES // CHUNK_BYTES):
        whole.update(block)
    refs = tuple(
        ChunkRef(chunk_hash, offset, CHUNK_BYTES)
        for offset in range(0, CHECKPOINT_BYTES, CHUNK_BYTES)
    )
    entry = FileEntry("model.bin", CHECKPOINT_BYTES, whole.hexdigest(), refs)
    return Manifest(
        source="hf://org/big", mount_location="/app/model_cache/big", files=(entry,)
    ), block


def test_a_1_gib_checkpoint_reaches_pods_from_the_bucket_never_through_the_lambda(
    gateway: LambdaGateway, bucket: tuple[Any, str], admin_key: str, tmp_path: Path
) -> None:
    s3, name = bucket
    manifest, block = _zero_checkpoint_manifest()
    chunk_hash = manifest.files[0].chunks[0].hash
    s3.put_object(Bucket=name, Key=chunk_key(chunk_hash), Body=block)
    s3.put_object(
        Bucket=name, Key=manifest_key(manifest.manifest_id), Body=manifest.canonical_json()
    )

    transport = httpx.MockTransport(gateway)
    with httpx.Client(base_url="https://api.example", transport=transport) as lambda_http:
        for path in (
            f"/weights/chunks/{chunk_hash}",
            f"/weights/manifests/{manifest.manifest_id}.json",
        ):
            assert lambda_http.get(path).status_code == 404  # the Lambda serves no weights

    cache = create_cluster_cache_app(tmp_path / "cluster-cache", f"s3://{name}")
    with serve(cache) as url, httpx.Client(base_url=url, timeout=60) as pod:
        fetched = pod.get(f"/manifests/{manifest.manifest_id}.json")
        assert fetched.content == manifest.canonical_json()
        chunk = pod.get(f"/chunks/{chunk_hash}")
        assert chunk.status_code == 200 and chunk.content == block
        tail = pod.get(f"/chunks/{chunk_hash}", headers={"Range": f"bytes={CHUNK_BYTES - 4}-"})
        assert tail.status_code == 206 and tail.content == b"\0" * 4
        assert pod.get(f"/chunks/{'0' * 64}").status_code == 404
        assert cache.state.stats.as_dict()["bytes_from_upstream"] == CHUNK_BYTES + len(
            fetched.content
        )
    assert max(gateway.largest_event, gateway.largest_response) < LAMBDA_PAYLOAD_CAP
