"""Origin tier read straight from the regional weights bucket (``s3://`` or ``gs://``).

In a cloud cluster the cluster cache fills its misses from the bucket with its own pod
identity (IRSA / EKS Pod Identity: boto3's default credentials; GKE Workload Identity:
google-auth's default credentials), so no chunk ever passes through the control plane's API
(a Lambda, capped at ~6 MB a response). Keys follow ``plinth.contracts.weights_manifest``,
under the bucket prefix the control plane's blob store uses.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from plinth.contracts.weights_manifest import chunk_key, manifest_key

BUCKET_SCHEMES = ("s3", "gs")


def is_bucket_url(url: str) -> bool:
    return urlsplit(url).scheme in BUCKET_SCHEMES


class BucketOrigin:
    """Reads chunks and manifests by digest from ``s3://bucket/prefix`` or ``gs://bucket/prefix``."""

    def __init__(self, url: str, *, client: Any | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in BUCKET_SCHEMES or not parts.netloc:
            raise ValueError(f"origin {url!r} is not s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]")
        self.scheme = parts.scheme
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self._client = client if client is not None else _default_client(self.scheme)

    def key(self, kind: str, digest: str) -> str:
        name = chunk_key(digest) if kind == "chunks" else manifest_key(digest)
        return self.prefix + name

    def read(self, kind: str, digest: str) -> bytes | None:
        """The object's bytes, or None when the bucket has no such object."""
        key = self.key(kind, digest)
        if self.scheme == "s3":
            return self._read_s3(key)
        return self._read_gcs(key)

    def _read_s3(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        data: bytes = response["Body"].read()
        return data

    def _read_gcs(self, key: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            data: bytes = self._client.bucket(self.bucket).blob(key).download_as_bytes()
        except NotFound:
            return None
        return data


def _default_client(scheme: str) -> Any:
    """The pod identity's client: boto3 / google-auth default credentials."""
    if scheme == "s3":
        import boto3

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        return boto3.client("s3", region_name=region or "us-east-1")
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="plinth", credentials=AnonymousCredentials())
    return storage.Client()
