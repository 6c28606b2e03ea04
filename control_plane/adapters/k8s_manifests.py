"""Pure rendering of a deployment's Kubernetes objects (Secret, Deployment, Service, PDB).

No API calls here: ``render_manifests`` turns a :class:`ReplicaSpec` into plain dicts
that ``KubernetesDriver`` applies and the tests validate with kubernetes-validate.
GPU placement comes from the accelerator catalog (:mod:`plinth.accelerators`), the same
tables ``infra/`` labels and taints GPU nodes from: the pod selects ``plinth.dev/gpu`` =
the catalog name (``H100``) and tolerates the GPU taints.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.image_context import IMAGE_PYTHON, model_server_command
from control_plane.ports.cluster import CustomServer, ReplicaSpec
from plinth.accelerators import (
    ACCELERATORS,
    GPU_RESOURCE,
    find_accelerator,
    gpu_pod_node_selector,
    gpu_pod_tolerations,
    max_gpus_per_node,
)
from plinth.contracts.images import MODEL_SERVER_IMAGE
from plinth.contracts.replica_env import ReplicaEnv, ReplicaVar

# For a spec that names no image (none was built): one registry org everywhere, as infra/.
DEFAULT_IMAGE = MODEL_SERVER_IMAGE
DEPLOYMENT_LABEL = "plinth.dev/deployment-id"
MODEL_LABEL = "plinth.dev/model-id"
APP_LABELS = {
    "app.kubernetes.io/name": "plinth-model-server",
    "app.kubernetes.io/managed-by": "plinth",
}
# ``spec.env`` key that picks the image for one deployment (else the driver's default).
IMAGE_ENV = "PLINTH_IMAGE"
# ``spec.env`` key naming the environment the deployment was pushed for (domain.package).
ENVIRONMENT_ENV = "PLINTH_ENVIRONMENT"
# PriorityClasses the platform creates (infra/platform.py PRIORITY_CLASSES): production
# replicas preempt development ones when GPUs run short, never the other way round.
PRODUCTION_PRIORITY_CLASS = "plinth-production"
DEVELOPMENT_PRIORITY_CLASS = "plinth-development"
# Service account the platform creates for replicas (infra/platform.py); its cloud identity
# may read the weight bucket's ``weights/`` prefix and nothing else.
REPLICA_SERVICE_ACCOUNT = "plinth-replica"
# The node agent DaemonSet (infra/platform.py) serves cached weight chunks on this hostPort
# of every node; replicas reach it at their node's IP.
WEIGHTS_CACHE_PORT = 8791
WEIGHTS_MANIFESTS_ENV = "PLINTH_WEIGHTS_MANIFESTS"
WEIGHTS_CLUSTER_URL_ENV = "PLINTH_WEIGHTS_CLUSTER_URL"
NODE_IP_ENV = "PLINTH_NODE_IP"
# The node tier of the weight cache: a directory of the node (under the hostPath the platform's
# node agent keeps its chunks in, infra/platform.py cache_host_path) that every replica on the
# node mounts, so a model's chunks are fetched once per node and survive replica restarts.
NODE_CACHE_HOST_PATH = "/var/lib/plinth/weights/node"
NODE_CACHE_MOUNT = "/var/lib/plinth/node-cache"

_NAME_MAX = 63
_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_ACCELERATOR = re.compile(r"^(?P<kind>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<count>[0-9]+))?$")


@dataclass(frozen=True)
class KubernetesOptions:
    namespace: str = "default"
    image: str = DEFAULT_IMAGE
    container_port: int = 8080
    secrets_mount_path: str = "/var/run/plinth/secrets"
    image_pull_policy: str = "IfNotPresent"
    # Removing a pod drains it: a preStop hook waits ``drain_settle_s`` (gateways drop the
    # terminating pod from their routing table), then until nothing is in flight, at most
    # ``drain_timeout_s``; then SIGTERM, and ``termination_grace_s`` for the server to exit.
    drain_settle_s: int = 5
    drain_timeout_s: int = 30
    termination_grace_s: int = 30
    # How long a replica may take to answer ``GET /`` after start (image pull excluded).
    startup_budget_s: int = 600
    production_priority_class: str = PRODUCTION_PRIORITY_CLASS
    development_priority_class: str = DEVELOPMENT_PRIORITY_CLASS
    # Replicas of one deployment a voluntary disruption (drain, node scale-down) may take
    # down at once: the rest keep serving while the evicted one restarts elsewhere.
    max_unavailable_on_disruption: int = 1
    service_account: str | None = REPLICA_SERVICE_ACCOUNT  # None: the namespace's default
    # hostPort of the node agent's cache; None: replicas fetch weights from the origin only.
    weights_cache_port: int | None = WEIGHTS_CACHE_PORT
    # hostPath of the node cache replicas with weights mount; None: each pod caches alone.
    node_cache_host_path: str | None = NODE_CACHE_HOST_PATH


@dataclass(frozen=True)
class AcceleratorRequest:
    kind: str  # catalog name, e.g. "H100": the plinth.dev/gpu node label value
    count: int


def parse_accelerator(value: str) -> AcceleratorRequest:
    """Truss ``resources.accelerator``: ``KIND`` or ``KIND:COUNT`` (``H100:8``).

    ``KIND`` must be in the accelerator catalog and ``COUNT`` fit on one of its machines:
    a pod asking for anything else would stay Pending forever.
    """
    match = _ACCELERATOR.match(value.strip())
    if match is None:
        raise ClusterError(f"accelerator {value!r} is not KIND or KIND:COUNT (e.g. 'H100:2')")
    count = int(match["count"] or 1)
    if count < 1:
        raise ClusterError(f"accelerator {value!r}: the count must be at least 1")
    accelerator = find_accelerator(match["kind"])
    if accelerator is None:
        known = ", ".join(sorted(ACCELERATORS))
        raise ClusterError(f"accelerator {value!r}: unknown kind (known: {known})")
    most = max_gpus_per_node(accelerator.name)
    if count > most:
        raise ClusterError(
            f"accelerator {value!r}: at most {most} {accelerator.name} GPUs fit on one node"
        )
    return AcceleratorRequest(kind=accelerator.name, count=count)


def object_name(deployment_id: str) -> str:
    """A DNS-1035 name (Service-safe) derived from the deployment id, stable and unique."""
    base = _INVALID_NAME_CHARS.sub("-", deployment_id.lower()).strip("-")
    name = f"plinth-{base}" if base else "plinth"
    if len(name) > _NAME_MAX or base != deployment_id:
        # Sanitising or truncating could merge two ids: a hash of the raw id keeps them apart.
        digest = hashlib.sha256(deployment_id.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_MAX - 9].rstrip('-')}-{digest}"
    return name


def label_value(raw: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends), unique per raw value."""
    value = _INVALID_LABEL_CHARS.sub("-", raw)[:_NAME_MAX].strip("-_.")
    if value == raw:
        return value
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{value[: _NAME_MAX - 9].rstrip('-_.')}-{digest}".lstrip("-")


def selector_labels(deployment_id: str) -> dict[str, str]:
    return {**APP_LABELS, DEPLOYMENT_LABEL: label_value(deployment_id)}


def render_manifests(
    spec: ReplicaSpec, replicas: int, options: KubernetesOptions | None = None
) -> list[dict[str, Any]]:
    """Secret (when the spec has secrets), Deployment, Service and PodDisruptionBudget.

    The Secret carries the values: never log the rendered list.
    """
    if replicas < 0:
        raise ClusterError(f"replicas must be >= 0, got {replicas}")
    opts = options or KubernetesOptions()
    name = object_name(spec.deployment_id)
    labels = {**selector_labels(spec.deployment_id), MODEL_LABEL: label_value(spec.model_id)}
    metadata = {
        "name": name,
        "namespace": opts.namespace,
        "labels": labels,
        "annotations": {DEPLOYMENT_LABEL: spec.deployment_id, MODEL_LABEL: spec.model_id},
    }
    manifests: list[dict[str, Any]] = []
    if spec.secrets:
        manifests.append(_secret(spec, metadata, f"{name}-secrets"))
    manifests.append(_deployment(spec, replicas, metadata, opts))
    manifests.append(_service(spec, metadata, opts))
    manifests.append(_disruption_budget(spec, metadata, opts))
    return manifests


def priority_class_for(spec: ReplicaSpec, opts: KubernetesOptions) -> str:
    """Production replicas outrank everything else Plinth runs (development, previews)."""
    if spec.env.get(ENVIRONMENT_ENV) == "production":
        return opts.production_priority_class
    return opts.development_priority_class


def _disruption_budget(
    spec: ReplicaSpec, metadata: dict[str, Any], opts: KubernetesOptions
) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {
            "maxUnavailable": opts.max_unavailable_on_disruption,
            "selector": {"matchLabels": selector_labels(spec.deployment_id)},
            # A crash-looping replica must not block a node drain or scale-down.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _secret(spec: ReplicaSpec, metadata: dict[str, Any], name: str) -> dict[str, Any]:
    for key in spec.secrets:
        if not re.fullmatch(r"[-._a-zA-Z0-9]+", key):
            raise ClusterError(f"secret name {key!r} is not a valid Kubernetes Secret key")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {**metadata, "name": name},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in spec.secrets.items()},
    }


def _deployment(
    spec: ReplicaSpec, replicas: int, metadata: dict[str, Any], opts: KubernetesOptions
) -> dict[str, Any]:
    pod_spec: dict[str, Any] = {
        "containers": [_container(spec, opts)],
        "terminationGracePeriodSeconds": (
            opts.drain_settle_s + opts.drain_timeout_s + opts.termination_grace_s
        ),
        "priorityClassName": priority_class_for(spec, opts),
        "automountServiceAccountToken": False,  # model code gets no cluster credentials
    }
    if opts.service_account:
        pod_spec["serviceAccountName"] = opts.service_account
    volumes: list[dict[str, Any]] = []
    if spec.secrets:
        volumes.append(
            {
                "name": "secrets",
                "secret": {"secretName": f"{metadata['name']}-secrets", "defaultMode": 0o400},
            }
        )
    if _mounts_node_cache(spec, opts):
        host_path = {"path": opts.node_cache_host_path, "type": "DirectoryOrCreate"}
        volumes.append({"name": "node-cache", "hostPath": host_path})
    if spec.accelerator:
        accelerator = parse_accelerator(spec.accelerator)
        pod_spec["nodeSelector"] = gpu_pod_node_selector(accelerator.kind)
        pod_spec["tolerations"] = gpu_pod_tolerations()
        # NCCL and torch dataloaders need more shared memory than the 64Mi default.
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    if volumes:
        pod_spec["volumes"] = volumes
    selector = selector_labels(spec.deployment_id)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": metadata["labels"],
                    "annotations": {
                        **metadata["annotations"],
                        # A custom server serves no Plinth /metrics.
                        **({} if spec.custom_server else _scrape_annotations(opts)),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def _scrape_annotations(opts: KubernetesOptions) -> dict[str, str]:
    """The common Prometheus pod annotations: every replica serves ``GET /metrics``."""
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(opts.container_port),
        "prometheus.io/path": "/metrics",
    }


def _container(spec: ReplicaSpec, opts: KubernetesOptions) -> dict[str, Any]:
    port = opts.container_port
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": spec.cpu, "memory": spec.memory},
        "limits": {"memory": spec.memory},
    }
    if spec.accelerator:
        count = str(parse_accelerator(spec.accelerator).count)
        resources["requests"][GPU_RESOURCE] = count
        resources["limits"][GPU_RESOURCE] = count
    node_cache = _mounts_node_cache(spec, opts)
    # The control plane's own cache dir means nothing in a pod: the node cache replaces it.
    dropped = {IMAGE_ENV, ReplicaVar.WEIGHTS_CACHE_DIR.value} if node_cache else {IMAGE_ENV}
    env: list[dict[str, Any]] = [
        {"name": k, "value": v} for k, v in sorted(spec.env.items()) if k not in dropped
    ]
    env += _node_cache_env(spec, opts)
    mounts: list[dict[str, Any]] = []
    if node_cache:
        env.append({"name": ReplicaVar.WEIGHTS_CACHE_DIR.value, "value": NODE_CACHE_MOUNT})
        mounts.append({"name": "node-cache", "mountPath": NODE_CACHE_MOUNT})
    if spec.secrets:
        secrets_env = ReplicaEnv(secrets_dir=opts.secrets_mount_path).to_env()
        env.extend({"name": k, "value": v} for k, v in secrets_env.items())
        mounts.append({"name": "secrets", "mountPath": opts.secrets_mount_path, "readOnly": True})
    if spec.accelerator:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    # The deployment's own image, by digest; the pod starts the model server that the image
    # holds, on the package the image holds: nothing from the control plane's filesystem.
    command = model_server_command(port=port, host="0.0.0.0")
    container: dict[str, Any] = {
        "name": "model-server",
        "image": spec.image or spec.env.get(IMAGE_ENV, opts.image),
        "imagePullPolicy": opts.image_pull_policy,
        "command": command[:3],
        "args": command[3:],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": resources,
        # Liveness only asks "is the server up" (it answers while load() runs);
        # readiness waits for load() so no traffic reaches a loading replica.
        "startupProbe": _probe("/", period=5, failures=max(1, opts.startup_budget_s // 5)),
        "livenessProbe": _probe("/", period=10, failures=3),
        "readinessProbe": _probe("/v1/models/model", period=5, failures=2),
        "lifecycle": {"preStop": {"exec": {"command": _drain_command(opts)}}},
    }
    if mounts:
        container["volumeMounts"] = mounts
    if spec.custom_server is not None:
        _run_custom_server(container, spec.custom_server)
    return container


def _drain_command(opts: KubernetesOptions) -> list[str]:
    """The preStop hook: wait until the server has nothing in flight (bounded). The image's
    interpreter, as its model server's: ``python`` on the image's PATH may lack gpu_nodes."""
    return [
        IMAGE_PYTHON, "-m", "gpu_nodes.model_server.drain", "--port", str(opts.container_port),
        "--settle", str(opts.drain_settle_s), "--timeout", str(opts.drain_timeout_s),
    ]  # fmt: skip


def _run_custom_server(container: dict[str, Any], server: CustomServer) -> None:
    """Truss ``docker_server``: the user's command on its own port, probed at its endpoints."""
    container["command"] = ["/bin/sh", "-c", server.start_command]
    container.pop("args", None)
    # The drain hook reads Plinth's in-flight gauge, which the user's server does not serve.
    container.pop("lifecycle", None)
    container["ports"] = [{"name": "http", "containerPort": server.server_port, "protocol": "TCP"}]
    container["env"].append({"name": "PORT", "value": str(server.server_port)})
    container["livenessProbe"]["httpGet"]["path"] = server.liveness_path
    container["startupProbe"]["httpGet"]["path"] = server.liveness_path
    container["readinessProbe"]["httpGet"]["path"] = server.readiness_path


def _mounts_node_cache(spec: ReplicaSpec, opts: KubernetesOptions) -> bool:
    return opts.node_cache_host_path is not None and bool(spec.env.get(WEIGHTS_MANIFESTS_ENV))


def _node_cache_env(spec: ReplicaSpec, opts: KubernetesOptions) -> list[dict[str, Any]]:
    """Point a replica that has weights at the node agent on its own node (the cluster tier).

    The node's IP comes from the downward API; ``$(PLINTH_NODE_IP)`` is expanded by the
    kubelet because it is defined earlier in the list. An explicit URL in the spec wins.
    """
    if (
        opts.weights_cache_port is None
        or not spec.env.get(WEIGHTS_MANIFESTS_ENV)
        or WEIGHTS_CLUSTER_URL_ENV in spec.env
    ):
        return []
    return [
        {"name": NODE_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {
            "name": WEIGHTS_CLUSTER_URL_ENV,
            "value": f"http://$({NODE_IP_ENV}):{opts.weights_cache_port}",
        },
    ]


def _probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _service(
    spec: ReplicaSpec, metadata: dict[str, Any], opts: KubernetesOptions
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec.deployment_id),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
