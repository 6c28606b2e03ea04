"""Chunk boundaries: tensor-aligned for safetensors (so fine-tunes dedup), FastCDC otherwise."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from plinth.contracts.chunking import (
    MAX_CHUNK,
    Span,
    chunk_spans,
    safetensors_tensor_bounds,
)
from plinth.contracts.exceptions import ManifestError
from plinth.contracts.weights_manifest import ChunkRef, FileEntry, Manifest, parse_manifest


def _hashes(path: Path, spans: list[Span]) -> dict[str, int]:
    data = path.read_bytes()
    return {
        hashlib.sha256(data[s.offset : s.offset + s.length]).hexdigest(): s.length for s in spans
    }


def _assert_tiles(spans: list[Span], size: int) -> None:
    position = 0
    for span in spans:
        assert span.offset == position and span.length > 0
        position += span.length
    assert position == size


def test_safetensors_chunks_follow_tensor_boundaries(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    tensors = {
        "big": np.ones(5 << 20, dtype=np.float32),  # 20 MiB: split into <= 8 MiB pieces
        "mid": np.ones(1 << 19, dtype=np.float32),  # 2 MiB: its own chunk
        "tiny.a": np.ones(10, dtype=np.float32),  # packed together
        "tiny.b": np.ones(20, dtype=np.float32),
    }
    save_file(tensors, str(path))
    spans = chunk_spans(path)
    size = path.stat().st_size
    _assert_tiles(spans, size)
    parsed = safetensors_tensor_bounds(path)
    assert parsed is not None
    data_start, bounds = parsed
    assert spans[0] == Span(0, data_start)  # the header is its own chunk
    starts = {b for b, _ in bounds}
    tensor_of = {b: e for b, e in bounds}
    for span in spans[1:]:
        assert span.length <= MAX_CHUNK
        # every chunk starts at a tensor start or inside one big tensor at an 8 MiB step
        assert span.offset in starts or any(
            b < span.offset < tensor_of[b] and (span.offset - b) % MAX_CHUNK == 0 for b in starts
        )
    # The two tiny tensors share one chunk.
    tiny_starts = sorted(b for b, e in bounds if e - b < 1024)
    assert any(s.offset == tiny_starts[0] and s.length >= 120 for s in spans)


def test_fine_tune_shares_most_chunks_with_base(tmp_path: Path, wt: Any) -> None:
    base = wt.write_model(tmp_path / "base", shards=2, tensors=10, mib=1.0)
    wt.fine_tune(base, tmp_path / "tuned", fraction=0.1)
    shared = total = 0
    for name in base:
        base_path, tuned_path = tmp_path / "base" / name, tmp_path / "tuned" / name
        assert base_path.read_bytes() != tuned_path.read_bytes()  # file-level dedup gets 0%
        base_chunks = _hashes(base_path, chunk_spans(base_path))
        tuned_chunks = _hashes(tuned_path, chunk_spans(tuned_path))
        total += sum(tuned_chunks.values())
        shared += sum(n for h, n in tuned_chunks.items() if h in base_chunks)
    assert shared / total >= 0.85


def test_non_safetensors_uses_content_defined_chunks(tmp_path: Path) -> None:
    # 32 MiB: even a maximal (8 MiB) first chunk leaves most bytes in chunks that must match.
    payload = os.urandom(32 << 20)
    original, shifted = tmp_path / "a.bin", tmp_path / "b.bin"
    original.write_bytes(payload)
    shifted.write_bytes(b"inserted bytes" + payload)
    spans_a, spans_b = chunk_spans(original), chunk_spans(shifted)
    _assert_tiles(spans_a, len(payload))
    _assert_tiles(spans_b, len(payload) + 14)
    assert all(s.length <= 8 << 20 for s in spans_a)
    hashes_a, hashes_b = _hashes(original, spans_a), _hashes(shifted, spans_b)
    # An insertion at the front only changes the first chunk.
    assert sum(n for h, n in hashes_b.items() if h in hashes_a) >= 0.5 * len(payload)


def test_corrupt_safetensors_header_falls_back_to_cdc(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes((10**9).to_bytes(8, "little") + b"{not json" + b"\0" * 100)
    assert safetensors_tensor_bounds(path) is None
    _assert_tiles(chunk_spans(path), path.stat().st_size)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    assert chunk_spans(empty) == []


def _manifest() -> Manifest:
    data = b"hello world"
    digest = hashlib.sha256(data).hexdigest()
    return Manifest(
        source="/x",
        mount_location="/w",
        files=(FileEntry("a/b.txt", len(data), digest, (ChunkRef(digest, 0, len(data)),)),),
    )


def test_manifest_roundtrip_and_id() -> None:
    manifest = _manifest()
    raw = manifest.canonical_json()
    parsed = parse_manifest(raw, expected_id=manifest.manifest_id)
    assert parsed == manifest
    assert manifest.manifest_id == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["files"][0].update(path="../etc/passwd"), "relative"),
        (lambda d: d["files"][0].update(size=99), "cover"),
        (lambda d: d["files"][0].update(sha256="zz"), "sha256"),
        (lambda d: d.update(version=7), "version"),
        (lambda d: d["files"][0]["chunks"][0].__setitem__(1, 3), "offset"),
    ],
)
def test_manifest_rejects_bad_input(mutate: Any, message: str) -> None:
    data = _manifest().to_dict()
    mutate(data)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(data).encode())


def test_manifest_detects_tampering() -> None:
    manifest = _manifest()
    data = manifest.to_dict()
    data["mount_location"] = "/elsewhere"
    with pytest.raises(ManifestError, match="expected"):
        parse_manifest(json.dumps(data).encode(), expected_id=manifest.manifest_id)
