"""Pieces of the environment builder that do not run pip: hashing and the per-hash lock.

Requirement lines are normalised (PEP 508 where they parse, verbatim otherwise), so
``Numpy >= 1.0`` and ``numpy>=1.0`` share one cached environment.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from control_plane.adapters.exceptions import BuildError

# Bump when the layout of a built environment changes, so old cache entries are not reused.
# 2: the model server's runtime is linked in, not the platform's whole site-packages.
CACHE_FORMAT = 2


def normalise_requirements(requirements: list[str]) -> list[str]:
    """Stripped, comment-free, de-duplicated, sorted requirement lines."""
    lines: set[str] = set()
    for raw in requirements:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if line:
            lines.add(_normalise_line(line))
    return sorted(lines)


def _normalise_line(line: str) -> str:
    if line.startswith("-") or "://" in line or line.startswith((".", "/")):
        return line  # pip options, URLs and paths: pip's business
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return line  # let pip report it in its own words
    req.name = canonicalize_name(req.name)
    return str(req)


def requirements_hash(requirements: list[str], runtime_identity: str) -> str:
    """sha256 of the normalised requirements, the interpreter and the runtime linked in."""
    identity = {
        "format": CACHE_FORMAT,
        "requirements": normalise_requirements(requirements),
        "python": [sys.implementation.name, list(sys.version_info[:3]), platform.machine()],
        "runtime": runtime_identity,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@contextmanager
def exclusive_lock(lock_path: Path, *, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (shared by threads and processes)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    message = (
                        f"another build of {lock_path.stem} held its lock past {timeout_s:.0f}s"
                    )
                    raise BuildError(message, []) from exc
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
