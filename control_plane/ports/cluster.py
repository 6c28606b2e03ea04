"""Cluster driver port: run N replicas of a deployment and report their state.

Declarative: ``scale(spec, n)`` sets the desired count; the driver converges and keeps
it (restarting replicas that die). The local adapter runs one process per replica on a
free loopback port; the Kubernetes adapter renders a Deployment + Service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ReplicaPhase(StrEnum):
    STARTING = "STARTING"  # process/pod started, model server not answering yet
    LOADING = "LOADING"  # server answers, model load() still running
    READY = "READY"  # load() done: takes traffic
    FAILED = "FAILED"  # load() raised, or crash-looping past the restart budget
    # Chosen for removal: takes no new requests (not ready in the routing table) and is
    # stopped once its in-flight requests finished or the drain timeout expired.
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class CustomServer:
    """The user's own server (Truss ``docker_server``) runs instead of the model server."""

    start_command: str  # a shell command; $PORT is the port it must listen on
    server_port: int  # the port it listens on when start_command does not use $PORT
    readiness_path: str
    liveness_path: str


@dataclass(frozen=True)
class ReplicaSpec:
    deployment_id: str
    model_id: str
    # Local driver: directory of the extracted package and the interpreter of its built venv.
    # Kubernetes driver: image reference / archive URL carried in ``env``.
    model_dir: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # materialised as files, never logged
    cpu: str = "1"
    memory: str = "2Gi"
    accelerator: str | None = None
    predict_concurrency: int = 1
    custom_server: CustomServer | None = None
    # The deployment's OCI image by digest (registry/repo@sha256:...), when images are built:
    # the container runtime and the Kubernetes driver run it instead of model_dir + python.
    image: str | None = None


@dataclass(frozen=True)
class ColdStart:
    """When one start of a replica reached each phase (epoch seconds; None: not yet, or the
    driver cannot tell). Scheduled: the driver started the process / the pod was created.
    Environment ready: the model server runs (image pulled, Python up). Weights ready: the
    deployment's weights are on disk. Model loaded: ``load()`` returned; the replica is ready."""

    scheduled_at: float
    environment_ready_at: float | None = None
    weights_ready_at: float | None = None
    model_loaded_at: float | None = None


@dataclass(frozen=True)
class ReplicaState:
    replica_id: str
    deployment_id: str
    url: str  # base URL of the model server, e.g. http://127.0.0.1:41234
    phase: ReplicaPhase
    restarts: int = 0
    message: str = ""
    cold_start: ColdStart | None = None  # the current start's phases
    # Which registered cluster runs it (set by the per-cluster fleet; "" with one driver).
    cluster_id: str = ""
    # Waiting for a node the cluster does not have (Kubernetes: PodScheduled False,
    # Unschedulable): the placement treats a lasting one as a capacity crunch.
    unschedulable: bool = False


class ClusterDriver(Protocol):
    name: str  # cluster name, as the routing table shows it

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        """Converge to ``replicas`` running copies of ``spec`` (0 stops them all).

        A ready replica chosen for removal drains first (the least busy are chosen): it is
        listed as DRAINING, so the routing table sends it nothing new, until its in-flight
        requests finished or the driver's drain timeout expired."""
        ...

    def replicas(self, deployment_id: str) -> list[ReplicaState]: ...

    def logs(self, deployment_id: str, *, tail: int = 200) -> list[str]:
        """Recent log lines of the deployment's replicas (stdout + stderr)."""
        ...

    def close(self) -> None:
        """Stop every replica this driver started."""
        ...
