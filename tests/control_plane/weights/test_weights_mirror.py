"""Mirror: sources per scheme -> content-addressed chunks + manifest in the blob store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from safetensors.numpy import save_file

from control_plane.adapters.dir_blob import DirectoryBlobStore
from control_plane.adapters.s3_blob import make_s3_client
from control_plane.weights import MirrorStats, mirror_source, mirror_weights, open_source
from plinth.contracts.exceptions import WeightSourceError
from plinth.contracts.weights_manifest import chunk_key, manifest_key, parse_manifest
from tests.support.cloud import gcs_emulator


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_file(
        {f"w{i}": rng.standard_normal(300_000, dtype=np.float32) for i in range(4)},
        str(root / "model.safetensors"),
    )
    (root / "config.json").write_text('{"a": 1}')
    (root / "sub" / "tokenizer.json").write_text('{"vocab": {}}')
    (root / "README.md").write_text("# readme")
    return root


def _store(tmp_path: Path) -> DirectoryBlobStore:
    return DirectoryBlobStore(tmp_path / "blobs")


def _check_mirrored(store: DirectoryBlobStore, manifest_id: str, source: Path) -> Any:
    manifest = parse_manifest(store.get_bytes(manifest_key(manifest_id)), expected_id=manifest_id)
    for entry in manifest.files:
        data = (source / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        for ref in entry.chunks:
            assert (
                store.get_bytes(chunk_key(ref.hash)) == data[ref.offset : ref.offset + ref.length]
            )
    return manifest


def test_local_mirror_is_content_addressed_and_idempotent(tmp_path: Path, model_dir: Path) -> None:
    store = _store(tmp_path)
    first, second = MirrorStats(), MirrorStats()
    manifest = mirror_source(open_source(str(model_dir)), store, mount_location="/m", stats=first)
    again = mirror_source(open_source(str(model_dir)), store, mount_location="/m", stats=second)
    assert manifest.manifest_id == again.manifest_id
    _check_mirrored(store, manifest.manifest_id, model_dir)
    assert first.chunks_uploaded == len(store.list("weights/chunks/")) > 4
    assert second.chunks_uploaded == 0 and second.bytes_uploaded == 0
    assert [f.path for f in manifest.files] == [
        "README.md",
        "config.json",
        "model.safetensors",
        "sub/tokenizer.json",
    ]


def test_patterns_select_files(tmp_path: Path, model_dir: Path) -> None:
    store = _store(tmp_path)
    entries = [
        {
            "source": str(model_dir),
            "mount_location": "/m",
            "allow_patterns": ["*.json", "*.md"],
            "ignore_patterns": ["README*"],
        },
    ]
    (manifest_id,) = mirror_weights(entries, store, {})
    manifest = _check_mirrored(store, manifest_id, model_dir)
    assert sorted(f.path for f in manifest.files) == ["config.json", "sub/tokenizer.json"]
    with pytest.raises(WeightSourceError, match="no files left"):
        mirror_weights(
            [{"source": str(model_dir), "mount_location": "/m", "allow_patterns": ["*.bin"]}],
            store,
            {},
        )


@pytest.mark.parametrize(
    ("entry", "secrets", "message"),
    [
        ({"source": "ftp://x/y", "mount_location": "/m"}, {}, "unsupported .* 'ftp'"),
        ({"source": "/does/not/exist", "mount_location": "/m"}, {}, "does not exist"),
        ({"source": "hf://just-a-name", "mount_location": "/m"}, {}, "hf://org/repo@revision"),
        ({"source": "s3://b/p", "mount_location": "/m", "auth_secret_name": "k"}, {}, "'k'"),
        ({"mount_location": "/m"}, {}, r"weights\[0\].*source"),
        (
            {"source": "s3://b/p", "mount_location": "/m", "auth_secret_name": "k"},
            {"k": "not json"},
            "JSON",
        ),
    ],
)
def test_bad_weights_entries_name_the_problem(
    tmp_path: Path, entry: dict[str, Any], secrets: dict[str, str], message: str
) -> None:
    with pytest.raises(WeightSourceError, match=message):
        mirror_weights([entry], _store(tmp_path), secrets)


def _fake_hub(repo_dir: Path, token: str) -> FastAPI:
    """Serves the HF Hub tree (paginated) and resolve routes for one repo directory."""
    app = FastAPI()
    files = sorted(p for p in repo_dir.rglob("*") if p.is_file())

    def check(auth: str | None) -> None:
        if auth != f"Bearer {token}":
            raise HTTPException(401, "bad token")

    @app.get("/api/models/{org}/{name}/tree/{rev}")
    def tree(
        org: str, name: str, rev: str, request: Request, authorization: str | None = Header(None)
    ) -> JSONResponse:
        check(authorization)
        page = int(request.query_params.get("cursor", "0"))
        entries = [
            {"type": "file", "path": p.relative_to(repo_dir).as_posix(), "size": p.stat().st_size}
            for p in files
        ]
        entries.append({"type": "directory", "path": "sub", "size": 0})
        chunk = entries[page * 2 : page * 2 + 2]
        headers = {}
        if page * 2 + 2 < len(entries):
            next_url = f"{request.url.remove_query_params('cursor')}&cursor={page + 1}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    @app.get("/{org}/{name}/resolve/{rev}/{path:path}")
    def resolve(
        org: str, name: str, rev: str, path: str, authorization: str | None = Header(None)
    ) -> FileResponse:
        check(authorization)
        if rev != "r1":
            raise HTTPException(404, "no such revision")
        return FileResponse(repo_dir / path)

    return app


def test_hf_source_over_loopback_hub(
    tmp_path: Path, model_dir: Path, serve_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    with serve_app(_fake_hub(model_dir, "hf_secret")) as hub:
        monkeypatch.setenv("PLINTH_HF_ENDPOINT", hub)
        entry = {
            "source": "hf://acme/tiny@r1",
            "mount_location": "/m",
            "auth_secret_name": "hf_access_token",
        }
        (manifest_id,) = mirror_weights([entry], store, {"hf_access_token": "hf_secret"})
        manifest = _check_mirrored(store, manifest_id, model_dir)
        assert manifest.source == "hf://acme/tiny@r1" and manifest.revision == "r1"
        assert len(manifest.files) == 4  # listed across three pages, directories skipped
        with pytest.raises(WeightSourceError, match="401"):
            mirror_weights([entry], store, {"hf_access_token": "wrong"})
        source = open_source("hf://acme/tiny@r1", secret="hf_secret")
        assert source.read_range("config.json", 1, 4) == b'"a"'


def test_https_single_file(tmp_path: Path, model_dir: Path, serve_app: Any) -> None:
    app = FastAPI()

    @app.api_route("/files/{name}", methods=["GET", "HEAD"])
    def get_file(name: str) -> FileResponse:
        if not (model_dir / name).is_file():
            raise HTTPException(404, "not found")
        return FileResponse(model_dir / name)

    store = _store(tmp_path)
    with serve_app(app) as host:
        (manifest_id,) = mirror_weights(
            [{"source": f"{host}/files/model.safetensors", "mount_location": "/m"}], store, {}
        )
        with pytest.raises(WeightSourceError, match="404"):
            mirror_weights(
                [{"source": f"{host}/files/nope.bin", "mount_location": "/m"}], store, {}
            )
    manifest = _check_mirrored(store, manifest_id, model_dir)
    assert [f.path for f in manifest.files] == ["model.safetensors"]
    assert len(manifest.files[0].chunks) >= 2  # header chunk + tensor chunks


@pytest.mark.integration
def test_s3_source_against_moto(tmp_path: Path, model_dir: Path, moto_endpoint: str) -> None:
    client = make_s3_client(
        endpoint_url=moto_endpoint, access_key_id="testing", secret_access_key="testing"
    )
    client.create_bucket(Bucket="weights")
    for path in model_dir.rglob("*"):
        if path.is_file():
            key = f"models/tiny/{path.relative_to(model_dir).as_posix()}"
            client.upload_file(str(path), "weights", key)
    client.put_object(Bucket="weights", Key="models/tinyish/other.txt", Body=b"not mine")
    secret = json.dumps(
        {
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "endpoint_url": moto_endpoint,
        }
    )
    store = _store(tmp_path)
    (manifest_id,) = mirror_weights(
        [{"source": "s3://weights/models/tiny", "mount_location": "/m", "auth_secret_name": "aws"}],
        store,
        {"aws": secret},
    )
    manifest = _check_mirrored(store, manifest_id, model_dir)
    assert len(manifest.files) == 4  # the sibling prefix 'tinyish' is not included


@pytest.mark.integration
def test_gs_source_against_emulator(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.adapters.gcs_blob import make_gcs_client

    with gcs_emulator() as emulator_url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url)
        client = make_gcs_client(project="test")
        bucket = client.create_bucket("weights")
        for path in model_dir.rglob("*"):
            if path.is_file():
                name = f"tiny/{path.relative_to(model_dir).as_posix()}"
                bucket.blob(name).upload_from_filename(str(path))
        store = _store(tmp_path)
        (manifest_id,) = mirror_weights(
            [{"source": "gs://weights/tiny/", "mount_location": "/m"}], store, {}
        )
        manifest = _check_mirrored(store, manifest_id, model_dir)
        assert len(manifest.files) == 4


def test_presigned_url_is_not_kept_in_the_manifest(
    tmp_path: Path, model_dir: Path, serve_app: Any
) -> None:
    app = FastAPI()

    @app.api_route("/f/{name}", methods=["GET", "HEAD"])
    def get_file(name: str, request: Request) -> FileResponse:
        if request.query_params.get("X-Amz-Signature") != "s3cr3t":
            raise HTTPException(403, "signature")
        return FileResponse(model_dir / name)

    store = _store(tmp_path)
    with serve_app(app) as host:
        url = f"{host}/f/config.json?X-Amz-Signature=s3cr3t"
        (manifest_id,) = mirror_weights([{"source": url, "mount_location": "/m"}], store, {})
    raw = store.get_bytes(manifest_key(manifest_id))
    assert b"s3cr3t" not in raw
    assert parse_manifest(raw).source == f"{host}/f/config.json"
