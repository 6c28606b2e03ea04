"""Weight sources, one per URI scheme: list files (path, size) and read byte ranges.

Schemes: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``hf://org/repo@rev`` (HF Hub HTTP API at
``PLINTH_HF_ENDPOINT``, default https://huggingface.co), ``https://host/file`` (one file) and
local paths (a file or a directory). Credentials come from the secret named by
``auth_secret_name``: an HF token, a bearer token for https, JSON keys for S3 / GCS.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse

import httpx

from control_plane.ports.blob import BlobNotFound, BlobStore
from plinth.contracts.exceptions import WeightSourceError

DEFAULT_HF_ENDPOINT = "https://huggingface.co"
_READ_PIECE = 8 << 20
_HTTP_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int


class WeightSource(Protocol):
    uri: str
    revision: str

    def list_files(self) -> list[SourceFile]: ...

    def read_range(self, path: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of one listed file."""
        ...

    def download(self, path: str, dest: Path) -> None:
        """Copy one listed file to ``dest``."""
        ...


class LocalSource:
    """A local file or directory tree."""

    def __init__(self, root: Path) -> None:
        if not root.exists():
            raise WeightSourceError(f"local weights path does not exist: {root}")
        self.uri = str(root)
        self.revision = ""
        self._root = root

    def _path(self, path: str) -> Path:
        return self._root if self._root.is_file() else self._root / path

    def list_files(self) -> list[SourceFile]:
        if self._root.is_file():
            return [SourceFile(self._root.name, self._root.stat().st_size)]
        return sorted(
            (
                SourceFile(p.relative_to(self._root).as_posix(), p.stat().st_size)
                for p in self._root.rglob("*")
                if p.is_file()
            ),
            key=lambda f: f.path,
        )

    def read_range(self, path: str, start: int, end: int) -> bytes:
        with self._path(path).open("rb") as handle:
            handle.seek(start)
            return handle.read(end - start)

    def download(self, path: str, dest: Path) -> None:
        shutil.copyfile(self._path(path), dest)


class BlobPrefixSource:
    """Every object under a prefix of a blob store (used for ``s3://`` and ``gs://``)."""

    def __init__(self, uri: str, store: BlobStore, prefix: str) -> None:
        self.uri = uri
        self.revision = ""
        self._store = store
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list_files(self) -> list[SourceFile]:
        infos = self._store.list(self._prefix)
        return [
            SourceFile(i.key[len(self._prefix) :], i.size) for i in infos if not i.key.endswith("/")
        ]

    def read_range(self, path: str, start: int, end: int) -> bytes:
        try:
            return self._store.get_bytes(self._prefix + path, start=start, end=end)
        except BlobNotFound as exc:
            raise WeightSourceError(f"{self.uri}: {path} disappeared while mirroring") from exc

    def download(self, path: str, dest: Path) -> None:
        self._store.get_file(self._prefix + path, dest)


def _http_download(client: httpx.Client, url: str, dest: Path, what: str) -> None:
    with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise WeightSourceError(f"{what}: GET returned HTTP {response.status_code}")
        with dest.open("wb") as handle:
            for piece in response.iter_bytes(_READ_PIECE):
                handle.write(piece)


def _http_range(client: httpx.Client, url: str, start: int, end: int, what: str) -> bytes:
    response = client.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
    if response.status_code == 206:
        return response.content
    if response.status_code == 200:
        return response.content[start:end]
    raise WeightSourceError(f"{what}: range GET returned HTTP {response.status_code}")


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment (presigned signatures live there)."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    return parsed._replace(netloc=netloc, query="", fragment="").geturl()


class HttpsFileSource:
    """A single file at an http(s) URL."""

    def __init__(self, url: str, token: str | None = None) -> None:
        # The URL may be presigned: keep it private, report it without query or credentials.
        self._url = url
        self.uri = redact_url(url)
        self.revision = ""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, timeout=_HTTP_TIMEOUT, follow_redirects=True)
        self._name = Path(urlparse(url).path).name or "download"

    def list_files(self) -> list[SourceFile]:
        response = self._client.head(self._url)
        if response.status_code != 200:
            raise WeightSourceError(f"{self._name}: HEAD returned HTTP {response.status_code}")
        size = response.headers.get("content-length")
        if size is None:
            raise WeightSourceError(f"{self._name}: server did not report content-length")
        return [SourceFile(self._name, int(size))]

    def read_range(self, path: str, start: int, end: int) -> bytes:
        return _http_range(self._client, self._url, start, end, self._name)

    def download(self, path: str, dest: Path) -> None:
        _http_download(self._client, self._url, dest, self._name)


class HuggingFaceSource:
    """A model repo on the HF Hub (or any server speaking its tree + resolve routes)."""

    def __init__(self, endpoint: str, repo: str, revision: str, token: str | None) -> None:
        self.uri = f"hf://{repo}@{revision}"
        self.repo = repo
        self.revision = revision
        self._endpoint = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, timeout=_HTTP_TIMEOUT, follow_redirects=True)

    def list_files(self) -> list[SourceFile]:
        rev = quote(self.revision, safe="")
        url: str | None = (
            f"{self._endpoint}/api/models/{self.repo}/tree/{rev}?recursive=true&expand=false"
        )
        found: list[SourceFile] = []
        while url:
            response = self._client.get(url)
            if response.status_code != 200:
                raise WeightSourceError(
                    f"hf://{self.repo}@{self.revision}: file list returned HTTP "
                    f"{response.status_code}"
                )
            for entry in response.json():
                if entry.get("type") == "file":
                    found.append(SourceFile(str(entry["path"]), int(entry["size"])))
            url = response.links.get("next", {}).get("url")
        return sorted(found, key=lambda f: f.path)

    def _resolve_url(self, path: str) -> str:
        rev = quote(self.revision, safe="")
        return f"{self._endpoint}/{self.repo}/resolve/{rev}/{quote(path)}"

    def read_range(self, path: str, start: int, end: int) -> bytes:
        return _http_range(self._client, self._resolve_url(path), start, end, path)

    def download(self, path: str, dest: Path) -> None:
        _http_download(self._client, self._resolve_url(path), dest, f"{self.uri}/{path}")


def _json_secret(secret: str | None, name: str) -> dict[str, str]:
    if not secret:
        return {}
    try:
        value = json.loads(secret)
    except ValueError as exc:
        raise WeightSourceError(f"secret for {name} must be a JSON object of credentials") from exc
    if not isinstance(value, dict):
        raise WeightSourceError(f"secret for {name} must be a JSON object of credentials")
    return value


def _s3_source(uri: str, bucket: str, prefix: str, secret: str | None) -> WeightSource:
    from control_plane.adapters.s3_blob import S3BlobStore, make_s3_client

    creds = _json_secret(secret, uri)
    client = make_s3_client(
        endpoint_url=creds.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL"),
        region=creds.get("region"),
        access_key_id=creds.get("aws_access_key_id"),
        secret_access_key=creds.get("aws_secret_access_key"),
        session_token=creds.get("aws_session_token"),
    )
    return BlobPrefixSource(uri, S3BlobStore(bucket, client=client), prefix)


def _gcs_source(uri: str, bucket: str, prefix: str, secret: str | None) -> WeightSource:
    from control_plane.adapters.gcs_blob import GCSBlobStore, make_gcs_client

    info = _json_secret(secret, uri) or None
    client = make_gcs_client(service_account_info=info)
    return BlobPrefixSource(uri, GCSBlobStore(bucket, client=client), prefix)


def _hf_source(uri: str, rest: str, secret: str | None, hf_endpoint: str | None) -> WeightSource:
    repo, _, revision = rest.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise WeightSourceError(
            f"hf source must look like hf://org/repo@revision, got {redact_url(uri)!r}"
        )
    endpoint = hf_endpoint or os.environ.get("PLINTH_HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    return HuggingFaceSource(endpoint, repo, revision or "main", secret)


def open_source(
    uri: str, *, secret: str | None = None, hf_endpoint: str | None = None
) -> WeightSource:
    """The ``WeightSource`` for a config ``source`` value; raises WeightSourceError if unknown."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("s3", "gs"):
        if not parsed.netloc:
            raise WeightSourceError(f"{scheme}:// source needs a bucket: {redact_url(uri)!r}")
        opener = _s3_source if scheme == "s3" else _gcs_source
        return opener(uri, parsed.netloc, parsed.path.lstrip("/"), secret)
    if scheme == "hf":
        return _hf_source(uri, uri[len("hf://") :], secret, hf_endpoint)
    if scheme in ("http", "https"):
        return HttpsFileSource(uri, secret)
    if scheme in ("", "file"):
        return LocalSource(Path(parsed.path if scheme == "file" else uri).expanduser())
    raise WeightSourceError(
        f"unsupported weights source scheme {scheme!r} in {redact_url(uri)!r} "
        "(use s3://, gs://, hf://, https:// or a local path)"
    )
