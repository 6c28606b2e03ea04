"""The shared sha256 helpers: the digest pattern and hashing a file in pieces."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from plinth.hashing import file_sha256, is_sha256_hex


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0" * 64, True),
        (hashlib.sha256(b"x").hexdigest(), True),
        ("A" * 64, False),  # uppercase is not how digests are written anywhere in Plinth
        ("0" * 63, False),
        ("0" * 65, False),
        ("0" * 64 + "\n", False),
        ("g" * 64, False),
        ("../" + "0" * 61, False),
        ("", False),
    ],
)
def test_is_sha256_hex(value: str, expected: bool) -> None:
    assert is_sha256_hex(value) is expected


def test_file_sha256_matches_hashlib_across_read_boundaries(tmp_path: Path) -> None:
    data = bytes(range(256)) * ((9 << 20) // 256 + 3)  # more than one 8 MiB read
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()
