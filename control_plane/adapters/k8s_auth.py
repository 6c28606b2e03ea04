"""Credentials for a named Kubernetes cluster: endpoint + CA + a bearer-token provider.

A Lambda (the reconciler) has neither an in-cluster service account nor a kubeconfig, so the
settings name the cluster (``PLINTH_K8S_ENDPOINT``, ``PLINTH_K8S_CA_DATA``, ``PLINTH_K8S_AUTH``)
and a provider mints tokens from the process's own cloud identity:

- EKS (``eks``): the token ``aws eks get-token`` makes: ``k8s-aws-v1.`` + base64url (no
  padding) of an STS ``GetCallerIdentity`` URL presigned for 60 s with the signed header
  ``x-k8s-aws-id: <cluster name>``. EKS accepts it for 15 minutes after signing; the provider
  makes a new one after 14 (``EKS_TOKEN_REFRESH_S``), so a request never carries one that is
  about to expire.
- GKE (``gke``): a Google OAuth access token from application-default credentials (Workload
  Identity, a service account), refreshed 5 minutes before the expiry google-auth reports.

The token is read for every request through the client's ``refresh_api_key_hook``, so a
long-lived driver keeps working past a token's lifetime. Tokens are never logged.
"""

from __future__ import annotations

import base64
import datetime
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client as k8s

from control_plane.adapters.exceptions import ClusterError

EKS_TOKEN_PREFIX = "k8s-aws-v1."
EKS_CLUSTER_HEADER = "x-k8s-aws-id"
# The presigned URL's own validity (what aws-cli uses); EKS honours the token 15 min anyway.
EKS_PRESIGN_EXPIRES_S = 60
EKS_TOKEN_REFRESH_S = 14 * 60
GKE_REFRESH_MARGIN_S = 5 * 60
GKE_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
AUTH_KINDS = ("eks", "gke", "none")


class TokenProvider(Protocol):
    def token(self) -> str:
        """A bearer token valid for at least the next request."""
        ...


def eks_token_from_presigned_url(url: str) -> str:
    """The ``k8s-aws-v1.`` form of a presigned GetCallerIdentity URL."""
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    return EKS_TOKEN_PREFIX + encoded


class EksTokenProvider:
    """EKS tokens from an STS client (its region's endpoint), cached for 14 minutes."""

    def __init__(
        self, cluster_name: str, sts_client: Any, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self._cluster_name = cluster_name
        self._sts = sts_client
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._token: str | None = None
        self._made_at = 0.0
        # Sign the cluster name into the request, as `aws eks get-token` does.
        self._sts.meta.events.register(
            "before-sign.sts.GetCallerIdentity", self._add_cluster_header
        )

    @classmethod
    def for_region(cls, cluster_name: str, region: str | None) -> EksTokenProvider:
        import boto3

        if not region:
            raise ClusterError("PLINTH_K8S_AUTH=eks needs PLINTH_AWS_REGION (the STS region)")
        sts = boto3.client(
            "sts", region_name=region, endpoint_url=f"https://sts.{region}.amazonaws.com"
        )
        return cls(cluster_name, sts)

    def _add_cluster_header(self, request: Any, **_: Any) -> None:
        request.headers[EKS_CLUSTER_HEADER] = self._cluster_name

    def token(self) -> str:
        with self._lock:
            now = self._clock()
            if self._token is None or now - self._made_at >= EKS_TOKEN_REFRESH_S:
                url = self._sts.generate_presigned_url(
                    "get_caller_identity",
                    Params={},
                    ExpiresIn=EKS_PRESIGN_EXPIRES_S,
                    HttpMethod="GET",
                )
                self._token = eks_token_from_presigned_url(url)
                self._made_at = now
            return self._token


class GkeTokenProvider:
    """OAuth access tokens from google-auth credentials, refreshed before they expire."""

    def __init__(
        self, credentials: Any, refresh_request: Any, clock: Callable[[], datetime.datetime]
    ) -> None:
        self._credentials = credentials
        self._request = refresh_request
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_default_credentials(cls) -> GkeTokenProvider:
        try:
            import google.auth
            from google.auth.transport.requests import Request
        except ImportError as exc:
            raise ClusterError(f"PLINTH_K8S_AUTH=gke needs google-auth: {exc}") from None
        credentials, _ = google.auth.default(scopes=list(GKE_SCOPES))
        return cls(credentials, Request(), _naive_utc_now)

    def token(self) -> str:
        with self._lock:
            expiry = self._credentials.expiry
            margin = datetime.timedelta(seconds=GKE_REFRESH_MARGIN_S)
            if not self._credentials.token or (expiry and self._clock() >= expiry - margin):
                self._credentials.refresh(self._request)
            return str(self._credentials.token)


def _naive_utc_now() -> datetime.datetime:
    # google-auth reports ``expiry`` as a naive UTC datetime.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one named cluster from outside it."""

    endpoint: str
    auth: str = "none"
    ca_data: str | None = field(default=None, repr=False)  # base64 PEM, as EKS/GKE report it
    cluster_name: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        if self.auth not in AUTH_KINDS:
            raise ClusterError(
                f"PLINTH_K8S_AUTH={self.auth!r} is not one of {', '.join(AUTH_KINDS)}"
            )
        if self.auth == "eks" and not self.cluster_name:
            raise ClusterError("PLINTH_K8S_AUTH=eks needs PLINTH_K8S_CLUSTER_NAME")


def token_provider_for(access: ClusterAccess) -> TokenProvider | None:
    if access.auth == "eks":
        return EksTokenProvider.for_region(str(access.cluster_name), access.region)
    if access.auth == "gke":
        return GkeTokenProvider.from_default_credentials()
    return None


def cluster_api_client(access: ClusterAccess, tokens: TokenProvider | None) -> k8s.ApiClient:
    """An API client for ``access`` whose bearer token comes from ``tokens`` on every request."""
    configuration = k8s.Configuration()
    configuration.host = access.endpoint.rstrip("/")
    if access.ca_data:
        configuration.ssl_ca_cert = _ca_file(access.ca_data)
    if tokens is not None:
        provider = tokens

        def refresh(conf: k8s.Configuration) -> None:
            conf.api_key["BearerToken"] = provider.token()

        configuration.api_key["BearerToken"] = provider.token()
        configuration.api_key_prefix["BearerToken"] = "Bearer"
        configuration.refresh_api_key_hook = refresh  # type: ignore[assignment]
    return k8s.ApiClient(configuration)


def named_cluster_client(settings: Any) -> k8s.ApiClient | None:
    """The client for the cluster the settings name (PLINTH_K8S_ENDPOINT), else None."""
    if not settings.k8s_endpoint:
        return None
    access = ClusterAccess(
        endpoint=settings.k8s_endpoint,
        auth=settings.k8s_auth,
        ca_data=settings.k8s_ca_data,
        cluster_name=settings.k8s_cluster_name,
        region=settings.aws_region,
    )
    return cluster_api_client(access, token_provider_for(access))


def _ca_file(ca_data: str) -> str:
    """The client wants a CA file; write the cluster's CA (public, but 0600 anyway)."""
    try:
        pem = base64.b64decode(ca_data, validate=True)
    except ValueError:
        raise ClusterError("PLINTH_K8S_CA_DATA is not base64 (the cluster's CA PEM)") from None
    fd, path = tempfile.mkstemp(prefix="plinth-k8s-ca-", suffix=".pem")
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path
