"""Envelope encryption of secret values: AES-256-GCM under a per-write data key.

The sealed form is a JSON-able dict: the KEK version, the wrapped data key, the nonce and the
ciphertext (base64). The secret's name is authenticated data, so a sealed value copied under
another name does not open.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from control_plane.ports.secret_keys import KeyEncryptionKeys, SecretKeyError

ENVELOPE_VERSION = 1
_NONCE_BYTES = 12


def _aad(name: str) -> bytes:
    return b"plinth-secret:" + name.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    return base64.b64decode(str(text).encode(), validate=True)


class SecretEnvelope:
    """Seals and opens secret values with data keys that ``keys`` wraps."""

    def __init__(self, keys: KeyEncryptionKeys) -> None:
        self._keys = keys

    def current_kek_id(self) -> str:
        return self._keys.current_kek_id()

    def seal(self, name: str, value: str) -> dict[str, Any]:
        data_key = self._keys.new_data_key()
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(data_key.plaintext).encrypt(nonce, value.encode(), _aad(name))
        return {
            "v": ENVELOPE_VERSION,
            "kek": data_key.kek_id,
            "wrapped_key": _b64(data_key.wrapped),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
        }

    def open(self, name: str, sealed: dict[str, Any]) -> str:
        kek_id = str(sealed.get("kek", ""))
        if sealed.get("v") != ENVELOPE_VERSION:
            raise SecretKeyError(f"secret {name!r}: unknown envelope version {sealed.get('v')!r}")
        try:
            data_key = self._keys.unwrap(_unb64(sealed["wrapped_key"]), kek_id)
            plaintext = AESGCM(data_key).decrypt(
                _unb64(sealed["nonce"]), _unb64(sealed["ciphertext"]), _aad(name)
            )
        except (KeyError, ValueError, InvalidTag):
            # The exception text of a failed decryption carries nothing secret, but say only
            # which secret and which KEK version so nothing else can ever leak through it.
            raise SecretKeyError(
                f"secret {name!r} does not decrypt with key-encryption key {kek_id!r}"
            ) from None
        return plaintext.decode()

    @staticmethod
    def kek_of(sealed: dict[str, Any]) -> str:
        return str(sealed.get("kek", ""))
