"""Secrets at rest: sealed in the store under a 0600 local key file, plaintext records from
before encryption still read and sealed by the re-wrap, and no value in logs or errors."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.adapters.local_kek import LocalKeyFile
from control_plane.adapters.sqlite_store import SqliteMetadataStore
from control_plane.domain.envelope import SecretEnvelope
from control_plane.domain.secrets import SecretService
from control_plane.exceptions import SettingsError
from control_plane.ports.secret_keys import SecretKeyError
from control_plane.settings import Settings
from control_plane.wiring import Platform

REPO_ROOT = Path(__file__).resolve().parents[3]
VALUE = "hf_SECRET-value-0123456789"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _service(state: Path) -> tuple[SecretService, SqliteMetadataStore, LocalKeyFile]:
    state.mkdir(parents=True, exist_ok=True)
    store = SqliteMetadataStore(state / "plinth.db")
    keys = LocalKeyFile(state / "secrets.kek")
    return SecretService(store, lambda: 1.0, SecretEnvelope(keys)), store, keys


def _db_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in state.glob("plinth.db*"))


def test_values_are_sealed_at_rest_under_a_0600_key_file(state: Path) -> None:
    secrets, store, _ = _service(state)
    try:
        secrets.upsert("hf_token", VALUE)
        assert stat.S_IMODE((state / "secrets.kek").stat().st_mode) == 0o600
        record = store.get("secrets", "hf_token")
        assert record is not None and "value" not in record.value
        assert record.value["sealed"]["kek"] == "local-1"
        assert VALUE.encode() not in _db_bytes(state)
        assert secrets.values_for(["hf_token", "missing"]) == {"hf_token": VALUE}
    finally:
        store.close()


def test_plaintext_records_still_read_and_rewrap_seals_them(state: Path) -> None:
    secrets, store, _ = _service(state)
    try:  # a store written before secrets were encrypted
        store.put("secrets", "legacy", {"value": VALUE, "created_at": 5.0, "updated_at": 6.0})
        assert secrets.values_for(["legacy"]) == {"legacy": VALUE}
        report = secrets.rewrap()
        assert report.rewrapped == ["legacy"]
        record = store.get("secrets", "legacy")
        assert record is not None and "value" not in record.value
        assert record.value["created_at"] == 5.0  # the record keeps its dates
        assert secrets.values_for(["legacy"]) == {"legacy": VALUE}
        store.put("secrets", "legacy2", {"value": VALUE, "created_at": 5.0, "updated_at": 6.0})
        secrets.upsert("legacy2", VALUE + "-new")  # a write seals it too
        item = store.get("secrets", "legacy2")
        assert item is not None and "sealed" in item.value and "value" not in item.value
    finally:
        store.close()


def test_a_sealed_value_moved_to_another_name_does_not_open(state: Path) -> None:
    secrets, store, _ = _service(state)
    try:
        secrets.upsert("a", VALUE)
        item = store.get("secrets", "a")
        assert item is not None
        store.put("secrets", "b", item.value)
        with pytest.raises(SecretKeyError) as caught:
            secrets.values_for(["b"])
        assert "'b'" in str(caught.value) and VALUE not in str(caught.value)
    finally:
        store.close()


def test_a_key_file_readable_by_others_is_refused(state: Path) -> None:
    secrets, store, _ = _service(state)
    try:
        secrets.upsert("a", VALUE)
        os.chmod(state / "secrets.kek", 0o644)
        with pytest.raises(SecretKeyError, match="chmod 600"):
            secrets.values_for(["a"])
    finally:
        store.close()


def test_no_value_in_logs(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets, store, keys = _service(state)
    try:
        secrets.upsert("a", VALUE)
        keys.rotate()
        secrets.rewrap()
        secrets.values_for(["a"])
    finally:
        store.close()
    assert "re-wrapped" in caplog.text and VALUE not in caplog.text


def test_rotate_command_moves_every_secret_to_the_new_key(state: Path) -> None:
    secrets, store, _ = _service(state)
    try:
        secrets.upsert("a", VALUE)
        store.put("secrets", "legacy", {"value": VALUE + "2", "created_at": 1.0, "updated_at": 1.0})
    finally:
        store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLINTH_")}
    env.update(PLINTH_STATE_DIR=str(state), PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "control_plane.secret_keys", "rotate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "new key-encryption key: local-2" in done.stdout
    assert "re-wrapped 2 secret(s) under local-2" in done.stdout
    assert VALUE not in done.stdout + done.stderr
    # Drop the old version from the key file: every value must now open with local-2 alone.
    key_file = json.loads((state / "secrets.kek").read_text())
    del key_file["keys"]["local-1"]
    (state / "secrets.kek").write_text(json.dumps(key_file))
    secrets, store, _ = _service(state)
    try:
        assert secrets.values_for(["a", "legacy"]) == {"a": VALUE, "legacy": VALUE + "2"}
    finally:
        store.close()


def test_a_shared_store_refuses_a_local_key_file(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, store_kind="dynamodb", cluster_kind="none")
    platform = Platform(settings, store=SqliteMetadataStore(tmp_path / "plinth.db"))
    try:
        assert platform.secrets.values_for([]) == {}  # no secret asked for: no key needed
        with pytest.raises(SettingsError, match="PLINTH_SECRETS_KEK=aws-kms"):
            platform.secrets.upsert("a", VALUE)
    finally:
        platform.close()
    with pytest.raises(SettingsError, match="PLINTH_SECRETS_KEK"):
        Settings(secrets_kek="vault")
