"""A cluster driver for each registered cluster, built from its record's driver settings.

- ``local``: a :class:`LocalProcessDriver` with its own replica directory
  (``<state dir>/clusters/<id>/replicas``), so ``plinth up --clusters N`` runs N clusters.
- ``kubernetes``: a :class:`KubernetesDriver` on the record's API endpoint and namespace; the
  bearer token comes from the cloud's own auth (EKS presigned STS for ``aws``, google-auth for
  ``gcp``, none otherwise).
- ``kubernetes-assumed-role`` (self-hosted): the control plane assumes the customer's role
  (``sts:AssumeRole`` with the external id read from the secret the record names) and signs
  EKS tokens with those credentials, refreshed before they expire.

The record holds no credentials: only the role's ARN and the ARN of the external id's secret.
"""

from __future__ import annotations

import datetime
from typing import Any

from control_plane.adapters.exceptions import ClusterError
from control_plane.domain.clusters import Cluster, DriverKind
from control_plane.ports.cluster import ClusterDriver
from control_plane.settings import Settings

EKS_CLUSTER_ARN_LABEL = "eks-cluster-arn"  # written by the hybrid stack
EKS_CLUSTER_NAME_LABEL = "eks-cluster-name"
ROLE_SESSION_NAME = "plinth-control-plane"
# Refresh assumed-role credentials this long before they expire.
ASSUMED_ROLE_SESSION_S = 3600


class ClusterDriverFactory:
    """``factory(cluster) -> ClusterDriver``. ``boto3_session`` is the control plane's own AWS
    session and ``sts_endpoint_url`` overrides the regional STS endpoint (tests: a moto server)."""

    def __init__(
        self,
        settings: Settings,
        *,
        boto3_session: Any | None = None,
        sts_endpoint_url: str | None = None,
    ) -> None:
        self._settings = settings
        self._boto3_session = boto3_session
        self._sts_endpoint_url = sts_endpoint_url

    def __call__(self, cluster: Cluster) -> ClusterDriver:
        kind = cluster.driver.kind
        if kind is DriverKind.LOCAL:
            from control_plane.adapters.local_cluster import LocalProcessDriver

            root = self._settings.state_dir / "clusters" / cluster.id
            return LocalProcessDriver(root, name=cluster.id, host=self._settings.host)
        if not cluster.driver.endpoint:
            raise ClusterError(f"cluster {cluster.id}: driver {kind.value} needs an endpoint")
        from control_plane.adapters.k8s_auth import ClusterAccess, cluster_api_client
        from control_plane.adapters.k8s_cluster import KubernetesDriver

        access = ClusterAccess(endpoint=cluster.driver.endpoint, region=cluster.region)
        tokens = self.token_provider(cluster)
        api = cluster_api_client(access, tokens)
        image = self._settings.k8s_image
        namespace = cluster.driver.namespace
        if image:
            return KubernetesDriver(namespace, api, image=image, name=cluster.id)
        return KubernetesDriver(namespace, api, name=cluster.id)

    def token_provider(self, cluster: Cluster) -> Any:
        """Bearer tokens for the cluster's API (None: the API needs none)."""
        from control_plane.adapters.k8s_auth import EksTokenProvider, GkeTokenProvider

        if cluster.driver.kind is DriverKind.KUBERNETES_ASSUMED_ROLE:
            session = self.assumed_role_session(cluster)
            return EksTokenProvider(eks_cluster_name(cluster), self._sts(session, cluster.region))
        if cluster.cloud == "aws":
            sts = self._sts(self._session(), cluster.region)
            return EksTokenProvider(eks_cluster_name(cluster), sts)
        if cluster.cloud == "gcp":
            return GkeTokenProvider.from_default_credentials()
        return None

    def assumed_role_session(self, cluster: Cluster) -> Any:
        """A boto3 session on the customer's role, its credentials refreshed automatically."""
        import boto3
        from botocore.credentials import RefreshableCredentials
        from botocore.session import get_session

        driver = cluster.driver
        if not driver.role_arn:
            raise ClusterError(f"cluster {cluster.id}: kubernetes-assumed-role needs role_arn")
        own = self._session()
        external_id = _external_id(own, driver.external_id_secret_arn, cluster.region)
        sts = self._sts(own, cluster.region)

        def assume() -> dict[str, str]:
            params: dict[str, Any] = {
                "RoleArn": driver.role_arn,
                "RoleSessionName": ROLE_SESSION_NAME,
                "DurationSeconds": ASSUMED_ROLE_SESSION_S,
            }
            if external_id:
                params["ExternalId"] = external_id
            creds = sts.assume_role(**params)["Credentials"]
            expiry = creds["Expiration"]
            if isinstance(expiry, datetime.datetime):
                expiry = expiry.isoformat()
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": str(expiry),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=assume(), refresh_using=assume, method="sts-assume-role"
        )
        botocore_session = get_session()
        botocore_session._credentials = credentials  # the documented way to plug a provider
        return boto3.Session(botocore_session=botocore_session, region_name=cluster.region)

    def _session(self) -> Any:
        if self._boto3_session is None:
            import boto3

            self._boto3_session = boto3.Session(region_name=self._settings.aws_region)
        return self._boto3_session

    def _sts(self, session: Any, region: str) -> Any:
        # EKS accepts only tokens presigned for a regional STS endpoint.
        endpoint = self._sts_endpoint_url or f"https://sts.{region}.amazonaws.com"
        return session.client("sts", region_name=region, endpoint_url=endpoint)


def eks_cluster_name(cluster: Cluster) -> str:
    arn = cluster.labels.get(EKS_CLUSTER_ARN_LABEL, "")
    if arn:
        return arn.rsplit("/", 1)[-1]
    return cluster.labels.get(EKS_CLUSTER_NAME_LABEL, cluster.id)


def _external_id(session: Any, secret_arn: str, region: str) -> str:
    if not secret_arn:
        return ""
    secrets = session.client("secretsmanager", region_name=_arn_region(secret_arn) or region)
    try:
        return str(secrets.get_secret_value(SecretId=secret_arn)["SecretString"])
    except Exception as exc:
        raise ClusterError(
            f"cannot read the external id secret {secret_arn}: {type(exc).__name__}"
        ) from None


def _arn_region(arn: str) -> str:
    parts = arn.split(":")
    return parts[3] if len(parts) > 3 else ""
