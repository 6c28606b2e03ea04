"""S3 blob store (boto3). Works against AWS and any S3-compatible endpoint (moto, MinIO, R2).

A whole-object PUT is atomic in S3, so readers never see a partial object; ``get_file``
downloads to a temporary name and renames.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from control_plane.ports.blob import BlobInfo, BlobNotFound

_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


class _CountingReader:
    """File-like wrapper that counts bytes read (``upload_fileobj`` does not report a size)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        # Fill the request: s3transfer takes a short read for the end of the stream.
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            piece = self._stream.read(wanted)
            if not piece:
                break
            parts.append(piece)
            if wanted > 0:
                wanted -= len(piece)
        data = b"".join(parts)
        self.count += len(data)
        return data


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> Any:
    """A boto3 S3 client; ``endpoint_url`` for S3-compatible stores (path-style addressing)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        aws_session_token=session_token,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    )


class S3BlobStore:
    """``BlobStore`` over one bucket; ``prefix`` namespaces every key (e.g. ``plinth/``)."""

    def __init__(self, bucket: str, *, client: Any | None = None, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client = client if client is not None else make_s3_client()

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self.prefix + key

    def put_bytes(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        reader = _CountingReader(stream)
        self._client.upload_fileobj(reader, self.bucket, self._key(key))
        return reader.count

    def put_file(self, key: str, path: Path) -> None:
        self._client.upload_file(str(path), self.bucket, self._key(key))

    def get_bytes(self, key: str, *, start: int = 0, end: int | None = None) -> bytes:
        if end is not None and end <= start:
            if self.head(key) is None:
                raise BlobNotFound(key)
            return b""
        extra: dict[str, str] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING_CODES:
                raise BlobNotFound(key) from exc
            if code == "InvalidRange":
                # Asking past the end of an object is an empty read, as for a file.
                return b""
            raise
        body: bytes = response["Body"].read()
        return body

    def iter_chunks(self, key: str, *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in _MISSING_CODES:
                raise BlobNotFound(key) from exc
            raise
        yield from response["Body"].iter_chunks(chunk_size)

    def get_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                for piece in self.iter_chunks(key):
                    handle.write(piece)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def head(self, key: str) -> BlobInfo | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in _MISSING_CODES:
                return None
            raise
        return BlobInfo(key=key, size=int(response["ContentLength"]))

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def list(self, prefix: str = "") -> list[BlobInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        found: list[BlobInfo] = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for item in page.get("Contents", []):
                found.append(BlobInfo(key=item["Key"][len(self.prefix) :], size=int(item["Size"])))
        return sorted(found, key=lambda info: info.key)

    # -- direct uploads (ports.blob.MultipartUploads) ----------------------------------------

    def presign_put(self, key: str, *, expires_s: int) -> str:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        url: str = self._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_s, HttpMethod="PUT"
        )
        return url

    def copy(self, source_key: str, target_key: str) -> None:
        # The managed copy switches to multipart copy above 5 GB; bytes stay inside S3.
        source = {"Bucket": self.bucket, "Key": self._key(source_key)}
        self._client.copy(source, self.bucket, self._key(target_key))

    def start_multipart(self, key: str) -> str:
        response = self._client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        return str(response["UploadId"])

    def presign_part(self, key: str, multipart_id: str, part_number: int, *, expires_s: int) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "UploadId": multipart_id,
            "PartNumber": part_number,
        }
        url: str = self._client.generate_presigned_url(
            "upload_part", Params=params, ExpiresIn=expires_s, HttpMethod="PUT"
        )
        return url

    def complete_multipart(self, key: str, multipart_id: str, etags: Sequence[str]) -> None:
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
        self._client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self._key(key),
            UploadId=multipart_id,
            MultipartUpload={"Parts": parts},
        )

    def abort_multipart(self, key: str, multipart_id: str) -> None:
        self._client.abort_multipart_upload(
            Bucket=self.bucket, Key=self._key(key), UploadId=multipart_id
        )
