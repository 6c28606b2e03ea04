"""Key-encryption-key contract: the local key file and AWS KMS (moto server) behave alike.

Each adapter makes data keys that unwrap to the same bytes, refuses a tampered wrapped key,
and carries the secret service through a rotation: values written before it still open, new
ones go under the new KEK, and a re-wrap moves the old ones over without losing any.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from control_plane.adapters.aws_kms_kek import AwsKmsKeys
from control_plane.adapters.local_kek import LocalKeyFile
from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.domain.envelope import SecretEnvelope
from control_plane.domain.secrets import SecretService
from control_plane.ports.secret_keys import DataKey, KeyEncryptionKeys, SecretKeyError


@dataclass
class Kek:
    """An adapter and how to rotate its KEK the way an operator would."""

    keys: KeyEncryptionKeys
    rotate: Callable[[], None]


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Kek:
    keys = LocalKeyFile(tmp_path / "state" / "secrets.kek")

    def rotate() -> None:
        keys.rotate()

    return Kek(keys, rotate)


def _aws_kms(request: pytest.FixtureRequest, tmp_path: Path) -> Kek:
    import boto3

    kms: Any = boto3.client(
        "kms",
        endpoint_url=request.getfixturevalue("contract_moto_endpoint"),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    alias = f"alias/plinth-secrets-{uuid.uuid4().hex[:8]}"
    kms.create_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])

    def rotate() -> None:  # what an operator does: point the alias at a new key
        kms.update_alias(AliasName=alias, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])

    return Kek(AwsKmsKeys(alias, kms), rotate)


KEK_FACTORIES = [
    pytest.param(_local, id="local"),
    pytest.param(_aws_kms, id="aws-kms", marks=pytest.mark.integration),
]


@pytest.fixture(params=KEK_FACTORIES)
def kek(request: pytest.FixtureRequest, tmp_path: Path) -> Kek:
    factory: Callable[[pytest.FixtureRequest, Path], Kek] = request.param
    return factory(request, tmp_path)


def test_a_data_key_unwraps_to_its_plaintext(kek: Kek) -> None:
    data_key = kek.keys.new_data_key()
    assert len(data_key.plaintext) == 32
    assert data_key.plaintext not in data_key.wrapped
    assert data_key.kek_id == kek.keys.current_kek_id()
    assert kek.keys.unwrap(data_key.wrapped, data_key.kek_id) == data_key.plaintext
    assert kek.keys.new_data_key().plaintext != data_key.plaintext  # fresh per write


def test_a_tampered_wrapped_key_is_refused(kek: Kek) -> None:
    data_key = kek.keys.new_data_key()
    tampered = bytes([data_key.wrapped[0] ^ 1]) + data_key.wrapped[1:]
    with pytest.raises(SecretKeyError):
        kek.keys.unwrap(tampered, data_key.kek_id)


def test_rotation_keeps_old_values_and_rewrap_moves_them(kek: Kek, tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "plinth.db")
    secrets = SecretService(store, lambda: 1.0, SecretEnvelope(kek.keys))
    try:
        secrets.upsert("old_token", "value-before-rotation")
        first_kek = kek.keys.current_kek_id()
        kek.rotate()
        second_kek = kek.keys.current_kek_id()
        assert second_kek != first_kek
        secrets.upsert("new_token", "value-after-rotation")

        def kek_of(name: str) -> str:
            item = store.get("secrets", name)
            assert item is not None
            return str(item.value["sealed"]["kek"])

        assert (kek_of("old_token"), kek_of("new_token")) == (first_kek, second_kek)
        both = {"old_token": "value-before-rotation", "new_token": "value-after-rotation"}
        assert secrets.values_for(both) == both

        report = secrets.rewrap()
        assert (report.kek_id, report.rewrapped, report.already_current) == (
            second_kek,
            ["old_token"],
            ["new_token"],
        )
        assert kek_of("old_token") == second_kek
        assert secrets.values_for(both) == both
        assert secrets.rewrap().rewrapped == []  # idempotent
    finally:
        store.close()


def test_local_key_file_has_one_writer_across_instances(tmp_path: Path) -> None:
    """Separate instances (as separate processes would) racing on first use and on rotation
    end with one key file that opens every data key any of them made."""
    path = tmp_path / "state" / "secrets.kek"
    instances = [LocalKeyFile(path) for _ in range(8)]
    barrier = threading.Barrier(len(instances))
    made: list[DataKey] = []

    def first_use_then_rotate(keys: LocalKeyFile) -> None:
        barrier.wait()
        made.append(keys.new_data_key())
        keys.rotate()
        made.append(keys.new_data_key())

    threads = [threading.Thread(target=first_use_then_rotate, args=(k,)) for k in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    fresh = LocalKeyFile(path)
    assert fresh.current_kek_id() == "local-9"  # 1 created + 8 rotations, none lost
    for data_key in made:
        assert fresh.unwrap(data_key.wrapped, data_key.kek_id) == data_key.plaintext
