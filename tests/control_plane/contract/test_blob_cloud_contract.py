"""BlobStore contract for the cloud adapters: S3 against a moto server, GCS against the emulator.

Both servers run on loopback for the module. The same checks also run against the embedded
directory store so the three adapters are held to one behaviour.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from control_plane.adapters.gcs_blob import GCSBlobStore, make_gcs_client
from control_plane.adapters.s3_blob import S3BlobStore, make_s3_client
from control_plane.ports.blob import BlobNotFound, BlobStore
from tests.support import cloud

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with cloud.moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def gcs_emulator(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[str]:
    with cloud.gcs_emulator() as url:
        monkeypatch_module.setenv("STORAGE_EMULATOR_HOST", url)
        yield url


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()


def _s3_factory(endpoint: str) -> BlobStore:
    client = make_s3_client(
        endpoint_url=endpoint, access_key_id="testing", secret_access_key="testing"
    )
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, client=client, prefix="plinth/")


def _gcs_factory() -> BlobStore:
    client = make_gcs_client(project="test")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    client.create_bucket(bucket)
    return GCSBlobStore(bucket, client=client)


def _dir_factory(tmp_path: Path) -> BlobStore:
    dir_blob = pytest.importorskip("control_plane.adapters.dir_blob")
    store: BlobStore = dir_blob.DirectoryBlobStore(tmp_path / "blobs")
    return store


@pytest.fixture(params=["directory", "s3", "gcs"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    factories: dict[str, Callable[[], BlobStore]] = {
        "directory": lambda: _dir_factory(tmp_path),
        "s3": lambda: _s3_factory(request.getfixturevalue("moto_endpoint")),
        "gcs": lambda: (request.getfixturevalue("gcs_emulator"), _gcs_factory())[1],
    }
    return factories[str(request.param)]()


def test_put_get_roundtrip_and_head(blob_store: BlobStore) -> None:
    blob_store.put_bytes("a/b.bin", b"hello world")
    assert blob_store.get_bytes("a/b.bin") == b"hello world"
    info = blob_store.head("a/b.bin")
    assert info is not None and info.size == 11 and info.key == "a/b.bin"
    assert blob_store.head("a/missing") is None


def test_range_reads(blob_store: BlobStore) -> None:
    data = bytes(range(256)) * 10
    blob_store.put_bytes("r", data)
    assert blob_store.get_bytes("r", start=10, end=20) == data[10:20]
    assert blob_store.get_bytes("r", start=2500) == data[2500:]
    assert blob_store.get_bytes("r", start=5, end=5) == b""
    assert blob_store.get_bytes("r", start=len(data) + 10) == b""


def test_missing_key_raises_blob_not_found(blob_store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobNotFound):
        blob_store.get_bytes("nope")
    with pytest.raises(BlobNotFound):
        list(blob_store.iter_chunks("nope"))
    with pytest.raises(BlobNotFound):
        blob_store.get_file("nope", tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_stream_file_and_chunks(blob_store: BlobStore, tmp_path: Path) -> None:
    payload = b"x" * 3_000_000 + b"tail"
    assert blob_store.put_stream("s/stream", io.BytesIO(payload)) == len(payload)
    source = tmp_path / "src.bin"
    source.write_bytes(payload[::-1])
    blob_store.put_file("s/file", source)
    assert b"".join(blob_store.iter_chunks("s/stream", chunk_size=1 << 20)) == payload
    target = tmp_path / "dl" / "out.bin"
    blob_store.get_file("s/file", target)
    assert target.read_bytes() == payload[::-1]


def test_failed_stream_leaves_nothing_visible(blob_store: BlobStore) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            if self.sent > 2_000_000:
                raise OSError("connection dropped")
            self.sent += 1 << 20
            return b"y" * (1 << 20)

        def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)

    with pytest.raises(OSError):
        blob_store.put_stream("partial", Broken())  # type: ignore[arg-type]
    assert blob_store.head("partial") is None
    assert blob_store.list("partial") == []


def test_list_by_prefix_sorted_and_delete(blob_store: BlobStore) -> None:
    for key in ["w/c/2", "w/c/1", "w/m/1", "x/1"]:
        blob_store.put_bytes(key, key.encode())
    assert [i.key for i in blob_store.list("w/c/")] == ["w/c/1", "w/c/2"]
    assert [i.key for i in blob_store.list("w/")] == ["w/c/1", "w/c/2", "w/m/1"]
    assert {i.size for i in blob_store.list("w/c/")} == {5}
    blob_store.delete("w/c/1")
    blob_store.delete("w/c/1")  # deleting a missing key is not an error
    assert [i.key for i in blob_store.list("w/c/")] == ["w/c/2"]
    with pytest.raises(BlobNotFound):
        blob_store.get_bytes("w/c/1")


def test_overwrite_replaces_whole_object(blob_store: BlobStore) -> None:
    blob_store.put_bytes("o", b"first version, long")
    blob_store.put_bytes("o", b"second")
    assert blob_store.get_bytes("o") == b"second"
