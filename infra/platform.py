"""In-cluster platform: namespace, RBAC, gateway, weights chunk cache, device plugin.

Everything is created through the explicit ``k8s.Provider`` in the args (never the ambient
kubeconfig), so one program can stand up the cluster and then its contents. The weights-cache
DaemonSet runs the chunk cache (``gpu_nodes.weights.cluster_cache``, the HTTP tier in front of
the weights origin) on every node: it tolerates the GPU taint (it must run where the GPUs are)
and keeps its chunks on a hostPath so they survive pod restarts. The node agent itself
(``gpu_nodes.weights.agent``) is not a pod: it runs inside each replica before the model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.exceptions import InfraConfigError
from infra.gpu_catalog import gpu_pod_tolerations
from infra.node_autoscaling import ClusterAutoscalerChart, cluster_autoscaler_release
from infra.tags import StandardTags
from infra.weight_access import REPLICA_SERVICE_ACCOUNT

DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"
DEVICE_PLUGIN_VERSION = "0.17.1"
GATEWAY_PORT = 8080
WEIGHTS_CACHE_PORT = 8791
# The Service in front of every node's weights cache: the in-cluster origin replicas fall back
# to (the control plane's API, a Lambda, never serves chunks).
WEIGHTS_CACHE_SERVICE = "plinth-weights-cache"


def in_cluster_weights_origin(namespace: str = "plinth") -> str:
    """PLINTH_WEIGHTS_ORIGIN_URL for replicas: the weights caches' Service in ``namespace``."""
    return f"http://{WEIGHTS_CACHE_SERVICE}.{namespace}.svc.cluster.local:{WEIGHTS_CACHE_PORT}"


PRIORITY_CLASSES: dict[str, int] = {
    "plinth-system": 1_000_000,  # gateway and weights caches: evicting them breaks every model
    "plinth-production": 100_000,  # replicas of production environments
    "plinth-development": 10_000,  # development / preview deployments, preempted first
}


@dataclass(frozen=True)
class ClusterPlatformArgs:
    provider: k8s.Provider
    tags: StandardTags
    control_plane_url: pulumi.Input[str]
    gateway_image: str
    node_agent_image: str
    namespace: str = "plinth"
    gateway_replicas: int = 2
    gateway_service_type: str = "ClusterIP"
    cache_host_path: str = "/var/lib/plinth/weights"
    device_plugin_version: str = DEVICE_PLUGIN_VERSION
    # GKE installs its own device plugin with the driver; EKS needs NVIDIA's chart.
    install_device_plugin: bool = True
    # Where node caches fetch chunks they miss: the weights bucket (s3://B, gs://B, read with
    # the cache's own pod identity) in the cloud stacks; default: the control plane URL.
    weights_origin_url: pulumi.Input[str] | None = None
    # Kubernetes Secret (key "token") holding the gateways' PLINTH_INTERNAL_TOKEN; the
    # operator creates it with the same value the control plane has.
    internal_token_secret: str = "plinth-internal-token"
    # The token itself (the cloud stacks read it from the control plane's Secrets Manager
    # secret): the platform then creates that Secret. None: the operator creates it.
    internal_token: pulumi.Input[str] | None = None
    # EKS: the cluster-autoscaler that grows and shrinks the GPU node groups (its IAM role
    # and Pod Identity association come with ``EksCluster``). GKE autoscales natively: None.
    cluster_autoscaler: ClusterAutoscalerChart | None = None

    def __post_init__(self) -> None:
        if self.gateway_replicas < 1:
            raise InfraConfigError("gateway_replicas", f"{self.gateway_replicas} < 1")
        if self.gateway_service_type not in ("ClusterIP", "LoadBalancer", "NodePort"):
            raise InfraConfigError("gateway_service_type", f"unknown {self.gateway_service_type!r}")
        if not self.cache_host_path.startswith("/"):
            raise InfraConfigError("cache_host_path", f"{self.cache_host_path!r} is not absolute")
        for image_field in ("gateway_image", "node_agent_image"):
            image = getattr(self, image_field)
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                raise InfraConfigError(image_field, f"{image!r} must pin a tag or digest")


class ClusterPlatform(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    gateway_service_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterPlatformArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:platform:ClusterPlatform", name, None, opts)
        self._name, self._args = name, args
        self._opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace, labels=args.tags.k8s("platform")
            ),
            opts=self._opts,
        )
        self._ns = namespace.metadata.apply(lambda m: m.name or args.namespace)
        for class_name, value in PRIORITY_CLASSES.items():
            k8s.scheduling.v1.PriorityClass(
                f"{name}-{class_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=class_name, labels=args.tags.k8s("platform")
                ),
                value=value,
                global_default=False,
                preemption_policy="PreemptLowerPriority",
                description=f"Plinth {class_name.removeprefix('plinth-')} workloads",
                opts=self._opts,
            )
        gateway_sa = self._service_account("gateway", ["endpoints", "pods", "services"])
        cache_sa = self._service_account("weights-cache", ["pods", "configmaps"])
        # Replicas get no Kubernetes API access; the account exists so the cloud identity
        # (Pod Identity / Workload Identity) for reading weights can be bound to it.
        k8s.core.v1.ServiceAccount(
            f"{name}-replica",
            metadata=self._meta("replica", REPLICA_SERVICE_ACCOUNT),
            automount_service_account_token=False,
            opts=self._opts,
        )
        if args.internal_token is not None:
            k8s.core.v1.Secret(
                f"{name}-internal-token",
                metadata=self._meta("gateway", args.internal_token_secret),
                type="Opaque",
                string_data={"token": pulumi.Output.secret(args.internal_token)},
                opts=self._opts,
            )
        service = self._gateway(gateway_sa)
        self._weights_cache(cache_sa)
        if args.install_device_plugin:
            self._device_plugin()
        if args.cluster_autoscaler is not None:
            cluster_autoscaler_release(name, args.cluster_autoscaler, self._opts)
        self.namespace = self._ns
        self.gateway_service_name = service.metadata.apply(lambda m: m.name or "")
        self.register_outputs(
            {"namespace": self.namespace, "gateway_service_name": self.gateway_service_name}
        )

    def _meta(self, component: str, name: str) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(
            name=name, namespace=self._ns, labels=self._args.tags.k8s(component)
        )

    def _service_account(self, component: str, resources: list[str]) -> k8s.core.v1.ServiceAccount:
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-{component}",
            metadata=self._meta(component, f"plinth-{component}"),
            opts=self._opts,
        )
        role = k8s.rbac.v1.Role(
            f"{self._name}-{component}",
            metadata=self._meta(component, f"plinth-{component}"),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=[""], resources=resources, verbs=["get", "list", "watch"]
                )
            ],
            opts=self._opts,
        )
        k8s.rbac.v1.RoleBinding(
            f"{self._name}-{component}",
            metadata=self._meta(component, f"plinth-{component}"),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io",
                kind="Role",
                name=role.metadata.apply(lambda m: m.name or ""),
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount",
                    name=account.metadata.apply(lambda m: m.name or ""),
                    namespace=self._ns,
                )
            ],
            opts=self._opts,
        )
        return account

    def _gateway(self, account: k8s.core.v1.ServiceAccount) -> k8s.core.v1.Service:
        args = self._args
        labels = {"app.kubernetes.io/name": "plinth-gateway"}
        container = gateway_container(args)
        k8s.apps.v1.Deployment(
            f"{self._name}-gateway",
            metadata=self._meta("gateway", "plinth-gateway"),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.gateway_replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels={**labels, **args.tags.k8s("gateway")}
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.apply(lambda m: m.name or ""),
                        priority_class_name="plinth-system",
                        containers=[container],
                    ),
                ),
            ),
            opts=self._opts,
        )
        # Drains and node scale-downs take one gateway at a time; the rest keep routing.
        k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-gateway",
            metadata=self._meta("gateway", "plinth-gateway"),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            ),
            opts=self._opts,
        )
        return k8s.core.v1.Service(
            f"{self._name}-gateway",
            metadata=self._meta("gateway", "plinth-gateway"),
            spec=k8s.core.v1.ServiceSpecArgs(
                type=args.gateway_service_type,
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http")],
            ),
            opts=self._opts,
        )

    def _weights_cache(self, account: k8s.core.v1.ServiceAccount) -> None:
        args = self._args
        labels = {"app.kubernetes.io/name": "plinth-weights-cache"}
        k8s.core.v1.Service(
            f"{self._name}-weights-cache",
            metadata=self._meta("weights-cache", WEIGHTS_CACHE_SERVICE),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=labels,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="cache", port=WEIGHTS_CACHE_PORT, target_port="cache"
                    )
                ],
            ),
            opts=self._opts,
        )
        k8s.apps.v1.DaemonSet(
            f"{self._name}-weights-cache",
            metadata=self._meta("weights-cache", "plinth-weights-cache"),
            spec=k8s.apps.v1.DaemonSetSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels={**labels, **args.tags.k8s("weights-cache")}
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.apply(lambda m: m.name or ""),
                        priority_class_name="plinth-system",
                        tolerations=[
                            k8s.core.v1.TolerationArgs(
                                key=t["key"], operator=t["operator"], effect=t["effect"]
                            )
                            for t in gpu_pod_tolerations()
                        ],
                        containers=[weights_cache_container(args)],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="cache",
                                host_path=k8s.core.v1.HostPathVolumeSourceArgs(
                                    path=args.cache_host_path, type="DirectoryOrCreate"
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=self._opts,
        )

    def _device_plugin(self) -> None:
        k8s.helm.v3.Release(
            f"{self._name}-device-plugin",
            k8s.helm.v3.ReleaseArgs(
                chart=DEVICE_PLUGIN_CHART,
                version=self._args.device_plugin_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=DEVICE_PLUGIN_REPO),
                namespace="kube-system",
                values={
                    "tolerations": gpu_pod_tolerations(),
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "priorityClassName": "system-node-critical",
                },
            ),
            opts=self._opts,
        )


def gateway_container(args: ClusterPlatformArgs) -> k8s.core.v1.ContainerArgs:
    """The gateway: polls the control plane's routing table, proxies to replicas."""
    return k8s.core.v1.ContainerArgs(
        name="gateway",
        image=args.gateway_image,
        command=["python", "-m", "gpu_nodes.gateway"],
        args=[
            "--control-plane-url",
            "$(PLINTH_CONTROL_PLANE_URL)",
            "--host",
            "0.0.0.0",
            "--port",
            str(GATEWAY_PORT),
        ],
        env=[
            k8s.core.v1.EnvVarArgs(name="PLINTH_CONTROL_PLANE_URL", value=args.control_plane_url),
            k8s.core.v1.EnvVarArgs(
                name="PLINTH_INTERNAL_TOKEN",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=args.internal_token_secret, key="token", optional=True
                    )
                ),
            ),
        ],
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=GATEWAY_PORT)],
        readiness_probe=k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/healthz", port="http"),
            period_seconds=5,
        ),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "500m", "memory": "512Mi"}, limits={"memory": "1Gi"}
        ),
        security_context=k8s.core.v1.SecurityContextArgs(
            run_as_non_root=True,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
        ),
    )


def weights_cache_container(args: ClusterPlatformArgs) -> k8s.core.v1.ContainerArgs:
    """The chunk cache in front of the weights origin, one per node on a hostPort: replicas
    fetch the chunks their node cache misses from it instead of from the origin."""
    return k8s.core.v1.ContainerArgs(
        name="weights-cache",
        # The gpu_nodes image, configured in the stacks as ``node_agent_image``.
        image=args.node_agent_image,
        command=["python", "-m", "gpu_nodes.weights.cluster_cache"],
        args=[
            "--dir",
            "/cache",
            "--origin",
            "$(PLINTH_WEIGHTS_ORIGIN_URL)",
            "--host",
            "0.0.0.0",
            "--port",
            str(WEIGHTS_CACHE_PORT),
        ],
        env=[
            k8s.core.v1.EnvVarArgs(
                name="PLINTH_WEIGHTS_ORIGIN_URL",
                value=args.weights_origin_url or args.control_plane_url,
            )
        ],
        ports=[
            k8s.core.v1.ContainerPortArgs(
                name="cache",
                container_port=WEIGHTS_CACHE_PORT,
                host_port=WEIGHTS_CACHE_PORT,
            )
        ],
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="cache", mount_path="/cache")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "250m", "memory": "256Mi"},
            limits={"memory": "2Gi"},
        ),
    )
