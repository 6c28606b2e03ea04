"""Cut files into chunks that survive fine-tuning: tensor-aligned safetensors, FastCDC otherwise.

A fine-tune rewrites every shard but leaves most tensors' bytes unchanged. Cutting safetensors
files on tensor boundaries (the header is its own chunk, big tensors are split into fixed
<= 8 MiB pieces, small neighbours are packed together) makes unchanged tensors produce the same
chunk hashes, so a fine-tune of a cached base fetches only the tensors it changed. Other files
use content-defined chunking (FastCDC), which survives insertions as well.
"""

from __future__ import annotations

import itertools
import json
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from fastcdc import fastcdc

MAX_CHUNK = 8 << 20
# Tensors smaller than this are packed with their neighbours so a model with thousands of tiny
# norms/biases does not become thousands of HTTP requests.
SMALL_PACK = 1 << 20
CDC_MIN, CDC_AVG, CDC_MAX = 1 << 20, 4 << 20, 8 << 20
# A safetensors header larger than this is not a safetensors file we trust to parse.
MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class Span:
    offset: int
    length: int


def _split(start: int, end: int, limit: int) -> list[Span]:
    return [Span(pos, min(limit, end - pos)) for pos in range(start, end, limit)]


def safetensors_tensor_bounds(path: Path) -> tuple[int, list[tuple[int, int]]] | None:
    """(data start, [(abs start, abs end)] per tensor sorted) or None if not a safetensors file."""
    size = path.stat().st_size
    if size < 8:
        return None
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        if header_len > MAX_HEADER or 8 + header_len > size:
            return None
        try:
            header = json.loads(handle.read(header_len))
        except ValueError:
            return None
    if not isinstance(header, dict):
        return None
    data_start = 8 + header_len
    bounds: list[tuple[int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return None
        begin, finish = int(offsets[0]), int(offsets[1])
        if not 0 <= begin <= finish or data_start + finish > size:
            return None
        bounds.append((data_start + begin, data_start + finish))
    bounds.sort()
    return data_start, bounds


def _tensor_aligned_spans(size: int, data_start: int, bounds: list[tuple[int, int]]) -> list[Span]:
    """Header chunk, then segments cut only at tensor starts; small segments packed up to 1 MiB."""
    cuts = sorted({data_start, size, *(b for b, _ in bounds if b < size)})
    spans: list[Span] = [Span(0, data_start)]
    pack_start: int | None = None
    for begin, finish in itertools.pairwise(cuts):
        seg_len = finish - begin
        if seg_len == 0:
            continue
        if pack_start is not None and (finish - pack_start > SMALL_PACK or seg_len >= SMALL_PACK):
            spans.append(Span(pack_start, begin - pack_start))
            pack_start = None
        if seg_len >= SMALL_PACK:
            spans.extend(_split(begin, finish, MAX_CHUNK))
        elif pack_start is None:
            pack_start = begin
    if pack_start is not None:
        spans.append(Span(pack_start, size - pack_start))
    return spans


def _cdc_spans(path: Path, size: int) -> list[Span]:
    if size <= CDC_MIN:
        return [Span(0, size)] if size else []
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        chunks = fastcdc(memoryview(view), min_size=CDC_MIN, avg_size=CDC_AVG, max_size=CDC_MAX)
        return [Span(int(c.offset), int(c.length)) for c in chunks]


def chunk_spans(path: Path) -> list[Span]:
    """Chunk boundaries of a file: tensor-aligned for ``*.safetensors``, FastCDC otherwise."""
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        parsed = safetensors_tensor_bounds(path)
        if parsed is not None:
            return _tensor_aligned_spans(size, *parsed)
    return _cdc_spans(path, size)
