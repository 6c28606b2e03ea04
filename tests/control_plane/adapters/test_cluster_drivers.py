"""A driver per cluster record: local processes in their own directory, Kubernetes on the
record's endpoint, and a self-hosted cluster through the customer's assumed role (STS on moto)."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from control_plane.adapters.cluster_drivers import ClusterDriverFactory, eks_cluster_name
from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.k8s_auth import EKS_TOKEN_PREFIX
from control_plane.adapters.k8s_cluster import KubernetesDriver
from control_plane.adapters.local_cluster import LocalProcessDriver
from control_plane.domain.clusters import (
    Cluster,
    ClusterKind,
    DriverKind,
    DriverSettings,
    GeoPoint,
)
from control_plane.settings import Settings
from tests.support.cloud import moto_server

REGION = "eu-west-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/plinth-access"


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        yield endpoint


def self_hosted(secret_arn: str) -> Cluster:
    return Cluster(
        "acme-dc",
        "acme",
        REGION,
        GeoPoint(53.3, -6.3),
        kind=ClusterKind.SELF_HOSTED,
        labels={"eks-cluster-arn": "arn:aws:eks:eu-west-1:123456789012:cluster/acme-gpus"},
        driver=DriverSettings(
            kind=DriverKind.KUBERNETES_ASSUMED_ROLE,
            namespace="plinth",
            endpoint="https://acme.example.internal:6443",
            role_arn=ROLE_ARN,
            external_id_secret_arn=secret_arn,
        ),
    )


def test_local_clusters_get_their_own_driver_and_directory(tmp_path: Path) -> None:
    factory = ClusterDriverFactory(Settings(state_dir=tmp_path))
    cluster = Cluster("local-eu", "local", "eu-west", GeoPoint(51.5, -0.1))
    driver = factory(cluster)
    try:
        assert isinstance(driver, LocalProcessDriver)
        assert driver.name == "local-eu"
        assert driver._replicas_dir == tmp_path / "clusters" / "local-eu" / "replicas"
    finally:
        driver.close()


def test_kubernetes_without_an_endpoint_is_refused(tmp_path: Path) -> None:
    cluster = Cluster(
        "k", "other", "r", GeoPoint(0, 0), driver=DriverSettings(kind=DriverKind.KUBERNETES)
    )
    with pytest.raises(ClusterError, match="needs an endpoint"):
        ClusterDriverFactory(Settings(state_dir=tmp_path))(cluster)


def test_self_hosted_cluster_is_reached_through_the_assumed_role(tmp_path: Path, moto: str) -> None:
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret_arn = secrets.create_secret(Name="acme-external-id", SecretString="ext-123")["ARN"]
    factory = ClusterDriverFactory(Settings(state_dir=tmp_path), sts_endpoint_url=moto)
    cluster = self_hosted(secret_arn)

    session = factory.assumed_role_session(cluster)
    identity = session.client("sts", endpoint_url=moto).get_caller_identity()
    assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/plinth-access/")
    assumed_key = session.get_credentials().get_frozen_credentials().access_key
    assert assumed_key != "testing"

    token = factory.token_provider(cluster).token()
    assert token.startswith(EKS_TOKEN_PREFIX)
    padded = token[len(EKS_TOKEN_PREFIX) :] + "=" * (-len(token) % 4)
    url = base64.urlsafe_b64decode(padded).decode()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    # Signed with a temporary key of the assumed role (each provider assumes it afresh), not
    # the control plane's own, for the cluster the hybrid stack's label names.
    assert query["X-Amz-Credential"][0].startswith("ASIA")
    assert not query["X-Amz-Credential"][0].startswith("testing/")
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0]
    assert eks_cluster_name(cluster) == "acme-gpus"

    driver = factory(cluster)
    assert isinstance(driver, KubernetesDriver) and driver.name == "acme-dc"
    driver.close()


def test_a_missing_external_id_secret_is_a_clear_error(tmp_path: Path, moto: str) -> None:
    factory = ClusterDriverFactory(Settings(state_dir=tmp_path), sts_endpoint_url=moto)
    missing = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:nope"
    with pytest.raises(ClusterError, match="cannot read the external id secret"):
        factory(self_hosted(missing))
