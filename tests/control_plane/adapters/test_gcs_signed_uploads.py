"""GCS direct uploads: V4 signed URLs made by the real google-cloud-storage signer (a
generated service-account key), PUT to the GCS emulator, verified by ArchiveUploads."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import storage
from google.oauth2 import service_account

from control_plane.adapters.gcs_blob import GCSBlobStore, make_gcs_client
from control_plane.domain.archive_uploads import ArchiveUploads, UploadLimits
from control_plane.exceptions import HashMismatch
from tests.support import cloud

pytestmark = pytest.mark.integration
SIGNER = "plinth-api@plinth-test.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def signing_credentials() -> service_account.Credentials:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "plinth-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": SIGNER,
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return service_account.Credentials.from_service_account_info(info)


@pytest.fixture
def uploads(
    signing_credentials: service_account.Credentials, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ArchiveUploads, GCSBlobStore]]:
    with cloud.gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        bucket = f"archives-{uuid.uuid4().hex[:8]}"
        make_gcs_client().create_bucket(bucket)
        # Signs with the key; talks to the emulator through a plain session (no token fetch).
        client = storage.Client(
            project="plinth-test", credentials=signing_credentials, _http=requests.Session()
        )
        store = GCSBlobStore(bucket, client=client)
        yield ArchiveUploads(store, UploadLimits(max_bytes=1 << 30)), store


def test_signed_put_then_complete_stores_the_verified_archive(
    uploads: tuple[ArchiveUploads, GCSBlobStore],
) -> None:
    service, store = uploads
    body = os.urandom(300_000)
    sha = hashlib.sha256(body).hexdigest()
    plan = service.plan(sha, len(body))
    assert plan.mode == "single"  # one PUT takes up to 5 TiB on GCS
    assert plan.url is not None and plan.upload_id is not None
    query = parse_qs(urlsplit(plan.url).query)
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert query["X-Goog-Credential"][0].startswith(SIGNER + "/")
    assert query["X-Goog-Expires"] == ["3600"]
    assert len(query["X-Goog-Signature"][0]) == 512  # hex RSA-2048 signature

    assert httpx.put(plan.url, content=body).status_code == 200
    assert service.complete(sha, plan.upload_id, len(body)) == len(body)
    assert store.get_bytes(f"archives/{sha}.tar.gz") == body
    assert [info.key for info in store.list()] == [f"archives/{sha}.tar.gz"]
    assert service.plan(sha, len(body)).mode == "stored"


def test_a_mismatching_upload_is_dropped(uploads: tuple[ArchiveUploads, GCSBlobStore]) -> None:
    service, store = uploads
    sha = hashlib.sha256(b"the real archive").hexdigest()
    plan = service.plan(sha, 16)
    assert plan.url is not None and plan.upload_id is not None
    httpx.put(plan.url, content=b"not the archive!")
    with pytest.raises(HashMismatch, match="sha256"):
        service.complete(sha, plan.upload_id, 16)
    assert store.list() == []
