"""sha256 helpers shared by every plane: hashing a file, and recognising a hex digest.

Archives, weight chunks, files and manifests are all addressed by their sha256, and those
addresses become blob keys and file names, so one definition of "a sha256 digest" (64 lowercase
hex characters) is checked everywhere a digest arrives from outside.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

SHA256_HEX_PATTERN = re.compile(r"[0-9a-f]{64}")
# Read size when hashing a file: large enough that the hash, not the syscalls, sets the pace.
_READ_BYTES = 8 << 20


def is_sha256_hex(value: str) -> bool:
    """True when ``value`` is a sha256 hex digest: exactly 64 lowercase hex characters."""
    # fullmatch, not match with ``$``: ``$`` also matches before a trailing newline.
    return SHA256_HEX_PATTERN.fullmatch(value) is not None


def file_sha256(path: Path | str) -> str:
    """Hex sha256 of a file's bytes, read in pieces so a large file is never held in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while piece := handle.read(_READ_BYTES):
            digest.update(piece)
    return digest.hexdigest()
