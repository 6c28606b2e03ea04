"""Key-encryption keys in a local key file (``plinth up``): ``<state dir>/secrets.kek``.

The file (0600, created on first use) holds every KEK version and which one is current:
``{"current": "local-2", "keys": {"local-1": "<base64>", "local-2": "<base64>"}}``.
``rotate()`` adds a version; old versions stay so values sealed under them still open until
a re-wrap moves them (``python -m control_plane.secret_keys rewrap``).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control_plane.ports.secret_keys import DataKey, SecretKeyError

KEY_BYTES = 32
_NONCE_BYTES = 12
_PREFIX = "local-"


class LocalKeyFile:
    """KEK versions in one 0600 JSON file; a data key is wrapped with AES-256-GCM."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    # -- the port ------------------------------------------------------------------------
    def current_kek_id(self) -> str:
        return str(self._load()["current"])

    def new_data_key(self) -> DataKey:
        keys = self._load()
        kek_id = str(keys["current"])
        data_key = os.urandom(KEY_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        kek = AESGCM(self._key_bytes(keys, kek_id))
        wrapped = nonce + kek.encrypt(nonce, data_key, kek_id.encode())
        return DataKey(plaintext=data_key, wrapped=wrapped, kek_id=kek_id)

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        kek = AESGCM(self._key_bytes(self._load(), kek_id))
        try:
            return kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], kek_id.encode())
        except InvalidTag:
            raise SecretKeyError(
                f"{self._path}: data key does not unwrap with {kek_id!r}"
            ) from None

    # -- rotation ------------------------------------------------------------------------
    def rotate(self) -> str:
        """Add a new KEK version and make it current; returns its id."""
        with self._exclusive():
            keys = self._load()
            versions = [int(k.removeprefix(_PREFIX)) for k in keys["keys"]]
            kek_id = f"{_PREFIX}{max(versions) + 1}"
            keys["keys"][kek_id] = base64.b64encode(os.urandom(KEY_BYTES)).decode()
            keys["current"] = kek_id
            self._write(keys)
            return kek_id

    # -- the file ------------------------------------------------------------------------
    def _key_bytes(self, keys: dict[str, Any], kek_id: str) -> bytes:
        versions = keys["keys"]
        if not isinstance(versions, dict) or kek_id not in versions:
            raise SecretKeyError(f"{self._path} has no key-encryption key {kek_id!r}")
        return base64.b64decode(str(versions[kek_id]))

    def _load(self) -> dict[str, Any]:
        if not self._path.exists():
            with self._exclusive():
                if not self._path.exists():
                    first = base64.b64encode(os.urandom(KEY_BYTES)).decode()
                    self._write({"current": f"{_PREFIX}1", "keys": {f"{_PREFIX}1": first}})
        mode = stat.S_IMODE(self._path.stat().st_mode)
        if mode & 0o077:
            raise SecretKeyError(
                f"{self._path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        try:
            keys = json.loads(self._path.read_text())
        except (OSError, ValueError) as exc:
            raise SecretKeyError(f"{self._path} is not a key file: {type(exc).__name__}") from None
        if not isinstance(keys, dict) or "current" not in keys or "keys" not in keys:
            raise SecretKeyError(f"{self._path} is not a key file: no 'current' and 'keys'")
        return keys

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One writer across threads and processes (the control plane and the rotate
        command): two first uses racing would otherwise each create a different key."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self._path.with_name(f".{self._path.name}.lock")
        with self._lock:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _write(self, keys: dict[str, Any]) -> None:
        """Atomically, and 0600 from the first byte (never a moment world-readable)."""
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(keys, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self._path)
