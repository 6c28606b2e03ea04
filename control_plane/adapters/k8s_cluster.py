"""Kubernetes cluster driver: a Deployment, Service, PDB (+ Secret) per Plinth deployment.

``scale`` renders the objects (:func:`render_manifests`) and server-side-applies them, so
it creates or updates in one idempotent call (a pod removed drains first: its preStop hook waits
for its in-flight requests, and it is listed as DRAINING meanwhile); ``replicas`` maps the
deployment's pods to replica states (readiness probe on ``/v1/models/model`` = READY);
``logs`` reads pod logs.
Pods belong to the cluster, not to this process: ``close`` only releases the API client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.k8s_manifests import (
    DEFAULT_IMAGE,
    KubernetesOptions,
    render_manifests,
    selector_labels,
)
from control_plane.ports.cluster import ColdStart, ReplicaPhase, ReplicaSpec, ReplicaState

__all__ = ["KubernetesDriver", "KubernetesOptions", "pod_to_replica_state", "render_manifests"]

FIELD_MANAGER = "plinth-control-plane"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# Waiting reasons that will not fix themselves by waiting.
_PERMANENT_WAITING = {"InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"}


class KubernetesDriver:
    """:class:`control_plane.ports.cluster.ClusterDriver` over the Kubernetes API."""

    def __init__(
        self,
        namespace: str,
        api_client: k8s.ApiClient | None = None,
        image: str = DEFAULT_IMAGE,
        *,
        name: str = "kubernetes",
        options: KubernetesOptions | None = None,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        base = options or KubernetesOptions()
        self._options = dataclasses.replace(base, namespace=namespace, image=image)
        self._owns_client = api_client is None
        self._api = api_client if api_client is not None else _default_api_client()
        self._apps = k8s.AppsV1Api(self._api)
        self._core = k8s.CoreV1Api(self._api)
        self._policy = k8s.PolicyV1Api(self._api)
        self._timeout = request_timeout_s

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        for manifest in render_manifests(spec, replicas, self._options):
            self._apply(manifest)

    def replicas(self, deployment_id: str) -> list[ReplicaState]:
        pods = self._pods(deployment_id)
        states = [
            pod_to_replica_state(p, deployment_id, self._options.container_port) for p in pods
        ]
        return [s for s in states if s.phase is not ReplicaPhase.STOPPED]

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        pods = self._pods(deployment_id)
        if not pods or tail <= 0:
            return []
        per_pod = max(1, tail // len(pods))
        lines: list[str] = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            try:
                text = self._core.read_namespaced_pod_log(
                    pod_name,
                    self._options.namespace,
                    tail_lines=per_pod,
                    _request_timeout=self._timeout,
                )
            except k8s.ApiException as exc:
                lines.append(f"[{pod_name}] <logs unavailable: {exc.status} {exc.reason}>")
                continue
            lines.extend(f"[{pod_name}] {line}" for line in str(text).splitlines())
        return lines[-tail:]

    def close(self) -> None:
        if self._owns_client:
            self._api.close()

    def _apply(self, manifest: dict[str, Any]) -> None:
        kind = manifest["kind"]
        name = manifest["metadata"]["name"]
        patchers: dict[str, Callable[..., Any]] = {
            "Deployment": self._apps.patch_namespaced_deployment,
            "Service": self._core.patch_namespaced_service,
            "Secret": self._core.patch_namespaced_secret,
            "PodDisruptionBudget": self._policy.patch_namespaced_pod_disruption_budget,
        }
        try:
            patchers[kind](
                name,
                self._options.namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY_CONTENT_TYPE,
                _request_timeout=self._timeout,
            )
        except k8s.ApiException as exc:
            # The body of a failed Secret apply could echo values: report status only.
            raise ClusterError(
                f"applying {kind} {self._options.namespace}/{name} failed: "
                f"{exc.status} {exc.reason}"
            ) from None

    def _pods(self, deployment_id: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in selector_labels(deployment_id).items())
        try:
            listing = self._core.list_namespaced_pod(
                self._options.namespace, label_selector=selector, _request_timeout=self._timeout
            )
        except k8s.ApiException as exc:
            raise ClusterError(
                f"listing pods of {deployment_id} failed: {exc.status} {exc.reason}"
            ) from None
        items: list[dict[str, Any]] = self._api.sanitize_for_serialization(listing).get("items", [])
        return sorted(
            items,
            key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]),
        )


def pod_to_replica_state(pod: dict[str, Any], deployment_id: str, port: int) -> ReplicaState:
    """Replica state of one pod, given as the API's JSON (camelCase) dict."""
    metadata = pod.get("metadata", {})
    status = pod.get("status", {}) or {}
    containers = status.get("containerStatuses") or []
    restarts = sum(int(c.get("restartCount", 0)) for c in containers)
    ip = status.get("podIP")
    url = f"http://{ip}:{port}" if ip else ""
    phase, message = _phase_of(metadata, status, containers)
    return ReplicaState(
        replica_id=metadata.get("name", ""),
        deployment_id=deployment_id,
        url=url,
        phase=phase,
        restarts=restarts,
        message=message,
        cold_start=_cold_start(metadata, status, containers),
        unschedulable=_unschedulable(status),
    )


def _unschedulable(status: dict[str, Any]) -> bool:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return bool(condition.get("reason") == "Unschedulable")
    return False


def _cold_start(
    metadata: dict[str, Any], status: dict[str, Any], containers: list[dict[str, Any]]
) -> ColdStart | None:
    """The pod's own timestamps: created (scheduled), container running (image pulled, the
    environment is ready), Ready condition (model loaded). Weights are fetched inside the
    model server's load, so on Kubernetes that phase is part of the model load."""
    scheduled = _epoch(metadata.get("creationTimestamp"))
    if scheduled is None:
        return None
    running = [((c.get("state") or {}).get("running") or {}).get("startedAt") for c in containers]
    started = [t for t in (_epoch(r) for r in running) if t is not None]
    conditions: list[dict[str, Any]] = status.get("conditions") or []
    ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
    loaded = _epoch(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None
    return ColdStart(
        scheduled_at=scheduled,
        environment_ready_at=max(started) if started else None,
        model_loaded_at=loaded,
    )


def _epoch(value: object) -> float | None:
    """RFC 3339 (``2026-01-01T00:00:00Z``) to epoch seconds; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _phase_of(
    metadata: dict[str, Any], status: dict[str, Any], containers: list[dict[str, Any]]
) -> tuple[ReplicaPhase, str]:
    if metadata.get("deletionTimestamp"):
        # Its preStop hook waits for the in-flight requests; nothing new is routed to it.
        return ReplicaPhase.DRAINING, "terminating: draining in-flight requests"
    pod_phase = status.get("phase", "Pending")
    if pod_phase in ("Failed", "Succeeded"):
        return ReplicaPhase.FAILED, status.get("message") or f"pod {pod_phase.lower()}"
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting:
            reason = waiting.get("reason", "")
            text = f"{reason}: {waiting.get('message', '')}".rstrip(": ")
            permanent = reason in _PERMANENT_WAITING
            return (ReplicaPhase.FAILED if permanent else ReplicaPhase.STARTING), text
    if (conditions.get("Ready") or {}).get("status") == "True":
        return ReplicaPhase.READY, ""
    scheduled = conditions.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        return ReplicaPhase.STARTING, scheduled.get("message") or "waiting for a node"
    if containers and all(c.get("started") for c in containers):
        return ReplicaPhase.LOADING, ""
    return ReplicaPhase.STARTING, ""


def _default_api_client() -> k8s.ApiClient:
    """In-cluster service account when running in a pod, else the local kubeconfig."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        try:
            k8s_config.load_kube_config(client_configuration=configuration)
        except (k8s_config.ConfigException, FileNotFoundError) as exc:
            raise ClusterError(
                f"no Kubernetes credentials found (in-cluster or kubeconfig): {exc}"
            ) from exc
    return k8s.ApiClient(configuration)
