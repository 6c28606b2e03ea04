"""Google Cloud Storage blob store (google-cloud-storage).

GCS object uploads are atomic (an object appears only when its upload finishes). With
``STORAGE_EMULATOR_HOST`` set, ``make_gcs_client`` returns an anonymous client for the emulator.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from google.api_core.exceptions import NotFound, RequestRangeNotSatisfiable
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from control_plane.ports.blob import BlobInfo, BlobNotFound


def make_gcs_client(
    *, project: str | None = None, service_account_info: dict[str, Any] | None = None
) -> storage.Client:
    """A storage client: emulator (anonymous) when STORAGE_EMULATOR_HOST is set, else ADC / key."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project=project or "plinth", credentials=AnonymousCredentials())
    if service_account_info is not None:
        return storage.Client.from_service_account_info(service_account_info)
    return storage.Client(project=project)


def _signing_kwargs(client: storage.Client) -> dict[str, Any]:
    """How to sign URLs with the client's credentials.

    Credentials holding a private key sign locally. Compute/Workload Identity credentials
    hold only a token: then GCS signs through IAM ``signBlob`` given the account's email and
    a fresh access token (the account needs ``iam.serviceAccounts.signBlob`` on itself).
    """
    credentials = client._credentials
    if credentials is None or hasattr(credentials, "sign_bytes"):
        return {}
    email = getattr(credentials, "service_account_email", None)
    if not email:
        return {}
    from google.auth.transport.requests import Request

    credentials.refresh(Request())
    return {"service_account_email": email, "access_token": credentials.token}


class GCSBlobStore:
    """``BlobStore`` over one bucket; ``prefix`` namespaces every key."""

    def __init__(
        self, bucket: str, *, client: storage.Client | None = None, prefix: str = ""
    ) -> None:
        self.prefix = prefix
        self._client = client if client is not None else make_gcs_client()
        self._bucket = self._client.bucket(bucket)

    def _blob(self, key: str) -> Any:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self._bucket.blob(self.prefix + key)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._blob(key).upload_from_string(data, content_type="application/octet-stream")

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        # Spool to disk so the upload knows its size and stays a single atomic object write.
        with tempfile.TemporaryFile() as spool:
            count = 0
            while piece := stream.read(1 << 20):
                spool.write(piece)
                count += len(piece)
            spool.seek(0)
            self._blob(key).upload_from_file(spool, size=count)
        return count

    def put_file(self, key: str, path: Path) -> None:
        self._blob(key).upload_from_filename(str(path))

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            if self.head(key) is None:
                raise BlobNotFound(key)
            return b""
        info = self.head(key)
        if info is None:
            raise BlobNotFound(key)
        if start >= info.size:
            return b""
        last = info.size - 1 if end is None else min(end, info.size) - 1
        try:
            data: bytes = self._blob(key).download_as_bytes(start=start, end=last, checksum=None)
        except NotFound as exc:
            raise BlobNotFound(key) from exc
        except RequestRangeNotSatisfiable:
            return b""
        return data

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        info = self.head(key)
        if info is None:
            raise BlobNotFound(key)
        for start in range(0, info.size, chunk_size):
            yield self.get_bytes(key, start=start, end=min(start + chunk_size, info.size))

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self._blob(key).download_to_filename(tmp_name, checksum=None)
            os.replace(tmp_name, path)
        except NotFound as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise BlobNotFound(key) from exc
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def head(self, key: str) -> BlobInfo | None:
        blob = self._bucket.get_blob(self.prefix + key)
        if blob is None:
            return None
        return BlobInfo(key=key, size=int(blob.size or 0))

    def delete(self, key: str) -> None:
        try:
            self._blob(key).delete()
        except NotFound:
            pass

    def list(self, prefix: str = "") -> list[BlobInfo]:
        blobs = self._client.list_blobs(self._bucket, prefix=self.prefix + prefix)
        found = [BlobInfo(key=b.name[len(self.prefix) :], size=int(b.size or 0)) for b in blobs]
        return sorted(found, key=lambda info: info.key)

    # -- direct uploads (ports.blob.DirectUploads) -------------------------------------------

    def presign_put(self, key: str, *, expires_s: int) -> str:
        """A V4 signed URL. GCS takes objects up to 5 TiB in one PUT, so no multipart here.

        Signing needs a key: a service-account key file, or on GKE / Cloud Run the IAM
        signBlob API (see ``_signing_kwargs``).
        """
        url: str = self._blob(key).generate_signed_url(
            version="v4",
            expiration=timedelta(seconds=expires_s),
            method="PUT",
            **_signing_kwargs(self._client),
        )
        return url

    def copy(self, source_key: str, target_key: str) -> None:
        self._bucket.copy_blob(self._blob(source_key), self._bucket, self.prefix + target_key)
