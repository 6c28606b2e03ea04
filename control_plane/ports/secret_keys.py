"""Key-encryption-key port: the keys that wrap each secret's data key (envelope encryption).

A secret is encrypted with a fresh 256-bit data key; only the data key, wrapped by a
key-encryption key (KEK) that never leaves its owner (a local 0600 key file, AWS KMS), is
stored next to the ciphertext. Rotating the KEK means: new writes use the new version, old
values still unwrap with the version recorded beside them, and a re-wrap moves them over.

Adapters: ``control_plane.adapters.local_kek.LocalKeyFile`` (``plinth up``),
``control_plane.adapters.aws_kms_kek.AwsKmsKeys`` (AWS). No Cloud KMS adapter yet
(google-cloud-kms is not a dependency).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from control_plane.exceptions import ControlPlaneError


class SecretKeyError(ControlPlaneError):
    """A data key could not be made or unwrapped. Names the KEK, never a key or a value."""

    code = "SECRET_KEY"


@dataclass(frozen=True)
class DataKey:
    """A fresh data key: ``plaintext`` encrypts one value and is then forgotten."""

    plaintext: bytes = field(repr=False)
    wrapped: bytes = field(repr=False)
    kek_id: str


class KeyEncryptionKeys(Protocol):
    def current_kek_id(self) -> str:
        """The KEK version that new data keys are wrapped with."""
        ...

    def new_data_key(self) -> DataKey:
        """A fresh 32-byte data key wrapped by the current KEK version."""
        ...

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        """The data key ``wrapped`` by KEK version ``kek_id``; SecretKeyError if it cannot."""
        ...
