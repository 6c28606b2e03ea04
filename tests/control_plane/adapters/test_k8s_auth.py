"""A cluster named from outside (a Lambda's view): EKS tokens in `aws eks get-token`'s format,
refreshed before they expire, and sent by the Kubernetes driver as `Authorization: Bearer` to a
loopback stand-in for the API server; GKE tokens refreshed before google-auth's expiry."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import urllib3

from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.k8s_auth import (
    EKS_TOKEN_REFRESH_S,
    ClusterAccess,
    EksTokenProvider,
    GkeTokenProvider,
    cluster_api_client,
)
from control_plane.adapters.k8s_cluster import KubernetesDriver
from control_plane.exceptions import SettingsError
from control_plane.settings import Settings
from control_plane.wiring import Platform

CLUSTER = "plinth-use1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Signings:
    """Counts real SigV4 signings of GetCallerIdentity (one per token made)."""

    count: int = 0

    def __call__(self, **_: Any) -> None:
        self.count += 1


def _sts(signings: Signings | None = None) -> Any:
    sts = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url="https://sts.us-east-1.amazonaws.com",
        aws_access_key_id="AKIDPLINTHTEST",
        aws_secret_access_key="not-a-real-secret",
    )
    if signings is not None:
        sts.meta.events.register("before-sign.sts.GetCallerIdentity", signings)
    return sts


def _decode(token: str) -> str:
    body = token.removeprefix("k8s-aws-v1.")
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_eks_token_is_a_presigned_get_caller_identity_with_the_cluster_header() -> None:
    token = EksTokenProvider(CLUSTER, _sts()).token()
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    url = urlsplit(_decode(token))
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc, url.path) == ("https", "sts.us-east-1.amazonaws.com", "/")
    assert query["Action"] == "GetCallerIdentity" and query["Version"] == "2011-06-15"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "60"
    assert query["X-Amz-Credential"].startswith("AKIDPLINTHTEST/")
    assert "/us-east-1/sts/aws4_request" in query["X-Amz-Credential"]
    assert query["X-Amz-SignedHeaders"].split(";") == ["host", "x-k8s-aws-id"]
    assert len(query["X-Amz-Signature"]) == 64
    assert "not-a-real-secret" not in _decode(token)


def test_eks_token_is_reused_until_14_minutes_then_made_again() -> None:
    clock, signings = FakeClock(), Signings()
    provider = EksTokenProvider(CLUSTER, _sts(signings), clock)
    first = provider.token()
    clock.now += EKS_TOKEN_REFRESH_S - 1
    assert provider.token() == first and signings.count == 1
    clock.now += 1  # 14 min: EKS would still accept it for 1 more minute; replace it now
    provider.token()
    assert signings.count == 2


@dataclass
class FakeApiServer:
    authorizations: list[str | None] = field(default_factory=list)


def _self_signed_localhost(tmp_path: Path) -> tuple[Path, Path, str]:
    """(cert file, key file, base64 PEM as EKS reports certificateAuthority.data)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = tmp_path / "apiserver.crt", tmp_path / "apiserver.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file, base64.b64encode(pem).decode()


@pytest.fixture
def api_server() -> Iterator[tuple[FakeApiServer, str]]:
    yield from _serve(None)


def _serve(tls: ssl.SSLContext | None) -> Iterator[tuple[FakeApiServer, str]]:
    seen = FakeApiServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.authorizations.append(self.headers.get("Authorization"))
            data = json.dumps({"apiVersion": "v1", "kind": "PodList", "items": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    yield seen, f"{scheme}://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_driver_sends_a_fresh_eks_token_after_expiry(
    api_server: tuple[FakeApiServer, str],
) -> None:
    seen, url = api_server
    clock, signings = FakeClock(), Signings()
    provider = EksTokenProvider(CLUSTER, _sts(signings), clock)
    client = cluster_api_client(
        ClusterAccess(endpoint=url, auth="eks", cluster_name=CLUSTER), provider
    )
    driver = KubernetesDriver("plinth", client)
    driver.replicas("dep-1")
    driver.replicas("dep-1")
    first, again = seen.authorizations
    assert first is not None and first.startswith("Bearer k8s-aws-v1.")
    assert again == first and signings.count == 1  # cached between requests
    time.sleep(1.1)  # SigV4 signs to the second: a new token must differ from the old
    clock.now += EKS_TOKEN_REFRESH_S
    driver.replicas("dep-1")
    assert signings.count == 2
    assert seen.authorizations[-1] == f"Bearer {provider.token()}" != first
    client.close()


def test_settings_naming_an_eks_cluster_give_the_driver_its_tokens(
    api_server: tuple[FakeApiServer, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen, url = api_server
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPLINTHTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    env = {
        "PLINTH_STATE_DIR": str(tmp_path),
        "PLINTH_CLUSTER": "kubernetes",
        "PLINTH_K8S_ENDPOINT": url,
        "PLINTH_K8S_AUTH": "eks",
        "PLINTH_K8S_CLUSTER_NAME": CLUSTER,
        "PLINTH_AWS_REGION": "us-east-1",
    }
    platform = Platform(Settings.from_env(env))
    try:
        assert platform.driver.replicas("dep-1") == []
    finally:
        platform.close()
    token = (seen.authorizations[0] or "").removeprefix("Bearer ")
    assert token.startswith("k8s-aws-v1.")
    assert "sts.us-east-1.amazonaws.com" in _decode(token)


def test_the_cluster_ca_from_settings_verifies_the_api_server(tmp_path: Path) -> None:
    cert_file, key_file, ca_data = _self_signed_localhost(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    serving = _serve(tls)
    seen, url = next(serving)
    try:
        trusted = cluster_api_client(ClusterAccess(endpoint=url, ca_data=ca_data), None)
        assert KubernetesDriver("plinth", trusted).replicas("dep-1") == []
        assert len(seen.authorizations) == 1
        other_ca = _self_signed_localhost(tmp_path / "other")[2]
        untrusted = cluster_api_client(ClusterAccess(endpoint=url, ca_data=other_ca), None)
        with pytest.raises(urllib3.exceptions.HTTPError, match="CERTIFICATE_VERIFY_FAILED"):
            KubernetesDriver("plinth", untrusted, request_timeout_s=5).replicas("dep-1")
        trusted.close()
        untrusted.close()
    finally:
        next(serving, None)


def test_cluster_settings_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="PLINTH_K8S_AUTH='token'"):
        Settings(k8s_auth="token")
    with pytest.raises(ClusterError, match="PLINTH_K8S_CLUSTER_NAME"):
        ClusterAccess(endpoint="https://x", auth="eks")
    with pytest.raises(ClusterError, match="PLINTH_K8S_CA_DATA"):
        cluster_api_client(ClusterAccess(endpoint="https://x", ca_data="not base64!"), None)


class FakeGoogleCredentials:
    """google-auth's credentials interface: token, naive-UTC expiry, refresh(request)."""

    def __init__(self, start: datetime.datetime) -> None:
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None
        self.refreshes = 0
        self._now = start

    def refresh(self, request: object) -> None:
        self.refreshes += 1
        self.token = f"ya29.token-{self.refreshes}"
        self.expiry = self._now + datetime.timedelta(hours=1)


def test_gke_token_is_refreshed_five_minutes_before_expiry() -> None:
    now = [datetime.datetime(2026, 12, 2, 9, 0)]
    credentials = FakeGoogleCredentials(now[0])
    provider = GkeTokenProvider(credentials, object(), lambda: now[0])
    assert provider.token() == "ya29.token-1"
    now[0] += datetime.timedelta(minutes=54, seconds=59)
    assert provider.token() == "ya29.token-1"
    now[0] += datetime.timedelta(seconds=1)  # 5 minutes before the expiry
    assert provider.token() == "ya29.token-2"
