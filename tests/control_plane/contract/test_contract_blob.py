"""BlobStore contract: every adapter in BLOB_STORE_FACTORIES must pass these."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from control_plane.ports.blob import BlobInfo, BlobNotFound, BlobStore

DATA = bytes(range(256)) * 41  # 10496 bytes, every byte value


def test_put_get_head(blob_store: BlobStore) -> None:
    blob_store.put_bytes("archives/abc.tar.gz", DATA)
    assert blob_store.get_bytes("archives/abc.tar.gz") == DATA
    assert blob_store.head("archives/abc.tar.gz") == BlobInfo("archives/abc.tar.gz", len(DATA))


def test_missing_key(blob_store: BlobStore, tmp_path: Path) -> None:
    assert blob_store.head("nope/x") is None
    with pytest.raises(BlobNotFound):
        blob_store.get_bytes("nope/x")
    with pytest.raises(BlobNotFound):
        list(blob_store.iter_chunks("nope/x"))
    with pytest.raises(BlobNotFound):
        blob_store.get_file("nope/x", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_whole_object(blob_store: BlobStore) -> None:
    blob_store.put_bytes("k", DATA)
    blob_store.put_bytes("k", b"short")
    assert blob_store.get_bytes("k") == b"short"
    assert blob_store.head("k") == BlobInfo("k", 5)


def test_empty_object(blob_store: BlobStore) -> None:
    blob_store.put_bytes("empty", b"")
    assert blob_store.get_bytes("empty") == b""
    assert blob_store.head("empty") == BlobInfo("empty", 0)


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (10, 300), (0, None), (5000, None), (len(DATA) - 1, None), (100, 100)],
)
def test_range_reads(blob_store: BlobStore, start: int, end: int | None) -> None:
    blob_store.put_bytes("weights/chunk", DATA)
    assert blob_store.get_bytes("weights/chunk", start=start, end=end) == DATA[start:end]


def test_range_past_end_is_clamped(blob_store: BlobStore) -> None:
    blob_store.put_bytes("k", DATA)
    assert blob_store.get_bytes("k", start=len(DATA) - 3, end=len(DATA) + 100) == DATA[-3:]


def test_iter_chunks_and_stream_round_trip(blob_store: BlobStore) -> None:
    count = blob_store.put_stream("logs/build.log", io.BytesIO(DATA))
    assert count == len(DATA)
    chunks = list(blob_store.iter_chunks("logs/build.log", chunk_size=4096))
    assert b"".join(chunks) == DATA
    assert all(len(c) <= 4096 for c in chunks) and len(chunks) >= 3


def test_put_file_get_file(blob_store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(DATA)
    blob_store.put_file("f/src.bin", src)
    dest = tmp_path / "deep" / "dir" / "out.bin"
    blob_store.get_file("f/src.bin", dest)
    assert dest.read_bytes() == DATA
    # No temporary file left beside the destination.
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.bin"]


def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    blob_store.put_bytes("a/b", b"x")
    blob_store.delete("a/b")
    assert blob_store.head("a/b") is None
    blob_store.delete("a/b")
    blob_store.delete("never/existed")


def test_list_by_prefix_sorted(blob_store: BlobStore) -> None:
    for key in ["weights/m/2", "weights/m/10", "weights/n/1", "archives/x", "weightsX"]:
        blob_store.put_bytes(key, key.encode())
    assert [i.key for i in blob_store.list("weights/")] == [
        "weights/m/10",
        "weights/m/2",
        "weights/n/1",
    ]
    assert [i.key for i in blob_store.list("weights")] == [
        "weights/m/10",
        "weights/m/2",
        "weights/n/1",
        "weightsX",
    ]
    assert [i.key for i in blob_store.list("weights/m/1")] == ["weights/m/10"]
    assert blob_store.list("nothing/") == []
    everything = blob_store.list()
    assert [i.key for i in everything] == sorted(
        ["weights/m/2", "weights/m/10", "weights/n/1", "archives/x", "weightsX"]
    )
    assert {i.key: i.size for i in everything}["archives/x"] == len("archives/x")
