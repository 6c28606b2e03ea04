"""Directory-specific behaviour of DirectoryBlobStore: key checks, atomic replacement."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from control_plane.adapters.dir_blob import DirectoryBlobStore
from control_plane.adapters.exceptions import InvalidKey


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a//b",
        "a/./b",
        "a\\b",
        "trailing/",
        ".staging/x",
    ],
)
def test_bad_keys_are_rejected_naming_the_key(tmp_path: Path, key: str) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    with pytest.raises(InvalidKey) as info:
        store.put_bytes(key, b"x")
    assert repr(key) in str(info.value)
    with pytest.raises(InvalidKey):
        store.get_bytes(key)
    assert not (tmp_path / "escape").exists()


def test_keys_map_to_files_and_staging_is_hidden(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    store.put_bytes("archives/abc.tar.gz", b"data")
    assert (tmp_path / "blobs" / "archives" / "abc.tar.gz").read_bytes() == b"data"
    assert store.path_of("archives/abc.tar.gz") == tmp_path / "blobs" / "archives" / "abc.tar.gz"
    assert [i.key for i in store.list()] == ["archives/abc.tar.gz"]
    assert list((tmp_path / "blobs" / ".staging").iterdir()) == []


def test_file_and_prefix_collisions_are_clear_errors(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    store.put_bytes("a", b"1")
    with pytest.raises(InvalidKey, match="parent"):
        store.put_bytes("a/b", b"2")
    store.put_bytes("x/y", b"3")
    with pytest.raises(InvalidKey, match="prefix"):
        store.put_bytes("x", b"4")
    assert store.head("x") is None
    assert list((tmp_path / "blobs" / ".staging").iterdir()) == []


def test_bad_ranges(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    store.put_bytes("k", b"0123456789")
    with pytest.raises(ValueError, match="range"):
        store.get_bytes("k", start=-1)
    with pytest.raises(ValueError, match="range"):
        store.get_bytes("k", start=5, end=2)


def test_readers_never_see_a_partial_object(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    versions = [bytes([v]) * (200_000 + v * 1000) for v in range(8)]
    store.put_bytes("hot", versions[0])
    stop = threading.Event()
    bad: list[int] = []

    def write() -> None:
        for round_ in range(40):
            store.put_bytes("hot", versions[round_ % len(versions)])
        stop.set()

    def read() -> None:
        while not stop.is_set():
            data = store.get_bytes("hot")
            if data not in versions:
                bad.append(len(data))

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert stop.is_set() and bad == []


def test_list_never_shows_staging_or_escapes(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    store.put_bytes("a/b", b"x")
    (tmp_path / "blobs" / ".staging" / "put-leftover").write_bytes(b"partial")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_bytes(b"y")
    assert store.list(".staging/") == []
    assert store.list("../outside/") == []
    assert store.list("a//") == []
    assert [i.key for i in store.list()] == ["a/b"]
