"""Contract-test fixtures: every adapter of a port runs the same tests.

To add an adapter (S3, GCS, DynamoDB, SQS ...), append a factory to the matching list
below. A factory receives an :class:`AdapterContext` (pytest ``request`` to pull in
server fixtures with ``ctx.request.getfixturevalue("contract_moto_endpoint")``, a fresh
``tmp_path``, and the queue's ``max_receives``) and returns a ready adapter; the
fixture closes it after the test. Skip from inside the factory
(``pytest.skip(...)``) when a backend cannot run here.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control_plane.adapters.dir_blob import DirectoryBlobStore
from control_plane.adapters.sqlite_queue import SqliteQueue
from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.ports.blob import BlobStore
from control_plane.ports.queue import Queue
from control_plane.ports.store import MetadataStore
from tests.support.cloud import moto_server

# The queue fixture's redrive limit; the DLQ contract test relies on it.
CONTRACT_MAX_RECEIVES = 2


@dataclass(frozen=True)
class AdapterContext:
    request: pytest.FixtureRequest
    tmp_path: Path
    max_receives: int = CONTRACT_MAX_RECEIVES


def _sqlite_store(ctx: AdapterContext) -> MetadataStore:
    return SqliteMetadataStore(ctx.tmp_path / "plinth.db")


def _directory_blob(ctx: AdapterContext) -> BlobStore:
    return DirectoryBlobStore(ctx.tmp_path / "blobs")


def _sqlite_queue(ctx: AdapterContext) -> Queue:
    return SqliteQueue(ctx.tmp_path / "plinth.db", max_receives=ctx.max_receives)


def _aws_client(ctx: AdapterContext, service: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=ctx.request.getfixturevalue("contract_moto_endpoint"),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _dynamodb_store(ctx: AdapterContext) -> MetadataStore:
    from control_plane.adapters.dynamodb_store import DynamoDbMetadataStore, create_table_request

    client = _aws_client(ctx, "dynamodb")
    name = f"metadata-{uuid.uuid4().hex[:12]}"  # the moto server is shared: one table per test
    client.create_table(**create_table_request(name))
    return DynamoDbMetadataStore(name, client)


def _sqs_queue(ctx: AdapterContext) -> Queue:
    from control_plane.adapters.sqs_queue import SqsQueue

    return SqsQueue(
        _aws_client(ctx, "sqs"),
        queue_prefix=f"t{uuid.uuid4().hex[:10]}-",
        create_missing=True,
        max_receives=ctx.max_receives,
    )


def _s3_blob(ctx: AdapterContext) -> BlobStore:
    from control_plane.adapters.s3_blob import S3BlobStore

    client = _aws_client(ctx, "s3")
    bucket = f"contract-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, client=client, prefix="plinth/")


def _atomic_moto_server() -> Any:
    """A moto server that applies one request at a time.

    DynamoDB checks a ConditionExpression and writes atomically, and SQS hands a message to one
    receiver; moto's backends do neither under its threaded server (two racing conditional puts
    can both pass). Serialising requests makes the emulator keep the service's per-request
    atomicity, which is what the racing contract tests rely on.
    """
    from moto.server import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        ThreadedMotoServer,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            lock = threading.Lock()

            def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
                with lock:
                    return list(app(environ, start_response))

            self._server = make_server(
                self._ip_address,
                self._port,
                one_at_a_time,
                True,
                request_handler=MotoRequestHandler,
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


@pytest.fixture(scope="session")
def contract_moto_endpoint() -> Iterator[str]:
    """One moto server on loopback for every AWS-backed contract test."""
    with moto_server(_atomic_moto_server()) as endpoint:
        yield endpoint


# ---- add cloud adapters here (pytest.param(factory, id="s3"), ...) -------------------------
STORE_FACTORIES: list[Any] = [
    pytest.param(_sqlite_store, id="sqlite"),
    pytest.param(_dynamodb_store, id="dynamodb", marks=pytest.mark.integration),
]
BLOB_STORE_FACTORIES: list[Any] = [
    pytest.param(_directory_blob, id="directory"),
    pytest.param(_s3_blob, id="s3", marks=pytest.mark.integration),
]
QUEUE_FACTORIES: list[Any] = [
    pytest.param(_sqlite_queue, id="sqlite"),
    pytest.param(_sqs_queue, id="sqs", marks=pytest.mark.integration),
]


def _build(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    factory: Callable[[AdapterContext], Any] = request.param
    return factory(AdapterContext(request=request, tmp_path=tmp_path))


@pytest.fixture(params=STORE_FACTORIES)
def metadata_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    store = _build(request, tmp_path)
    yield store
    store.close()


@pytest.fixture(params=BLOB_STORE_FACTORIES)
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    yield _build(request, tmp_path)


@pytest.fixture
def queue_max_receives() -> int:
    """Deliveries before a message of the ``queue`` fixture moves to ``<queue>-dlq``."""
    return CONTRACT_MAX_RECEIVES


@pytest.fixture(params=QUEUE_FACTORIES)
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Queue]:
    q = _build(request, tmp_path)
    yield q
    q.close()
