"""KubernetesDriver through the real ``kubernetes`` client over HTTP.

No API server can run here, so a small loopback HTTP server stands in for the Kubernetes
API: it records what the driver sends and answers with pod lists. This checks the driver's
side of the wire (server-side apply requests, label selectors, pod-to-replica mapping,
log reads); applying to a real cluster is not covered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client as k8s

from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.k8s_cluster import KubernetesDriver, pod_to_replica_state
from control_plane.ports.cluster import ClusterDriver, ReplicaPhase, ReplicaSpec

pytestmark = pytest.mark.integration


@dataclass
class FakeApi:
    requests: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int | None = None


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, body: Any, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PATCH(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            url = urlsplit(self.path)
            api.requests.append(
                {
                    "method": "PATCH",
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "content_type": self.headers.get("Content-Type"),
                    "body": body,
                }
            )
            if api.fail_status:
                self._reply(api.fail_status, {"kind": "Status", "code": api.fail_status})
                return
            self._reply(200, body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            api.requests.append({"method": "GET", "path": url.path, "query": query})
            if url.path.endswith("/log"):
                pod = url.path.split("/")[-2]
                lines = [f"{pod} line {i}" for i in range(int(query["tailLines"][0]))]
                self._reply(200, "\n".join(lines) + "\n", "text/plain")
                return
            self._reply(200, {"apiVersion": "v1", "kind": "PodList", "items": api.pods})

    return Handler


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def driver(fake_api: tuple[FakeApi, str]) -> Iterator[KubernetesDriver]:
    configuration = k8s.Configuration(host=fake_api[1])
    api_client = k8s.ApiClient(configuration)
    d = KubernetesDriver("models", api_client=api_client, image="img:1", request_timeout_s=5)
    yield d
    d.close()
    api_client.close()


SPEC = ReplicaSpec(
    deployment_id="dep1",
    model_id="m1",
    model_dir="/srv/model",
    python="python",
    secrets={"token": "s3cr3t"},
    accelerator="L4",
)


def _pod(name: str, *, ip: str | None, ready: bool, started: bool, **status: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "model-server",
        "image": "img:1",
        "imageID": "",
        "restartCount": status.pop("restarts", 0),
    }
    container["started"] = started
    container["ready"] = ready
    container["state"] = status.pop("state", {"running": {}} if started else {})
    return {
        "metadata": {
            "name": name,
            "creationTimestamp": status.pop("created", "2026-01-01T00:00:00Z"),
        },
        "spec": {"containers": [{"name": "model-server", "image": "img:1"}]},
        "status": {
            "phase": status.pop("phase", "Running"),
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [container],
            **status,
        },
    }


def test_scale_server_side_applies_secret_deployment_service(
    driver: KubernetesDriver, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    port: ClusterDriver = driver  # the driver satisfies the port
    port.scale(SPEC, 2)
    paths = [r["path"] for r in api.requests]
    assert paths == [
        "/api/v1/namespaces/models/secrets/plinth-dep1-secrets",
        "/apis/apps/v1/namespaces/models/deployments/plinth-dep1",
        "/api/v1/namespaces/models/services/plinth-dep1",
        "/apis/policy/v1/namespaces/models/poddisruptionbudgets/plinth-dep1",
    ]
    for request in api.requests:
        assert request["content_type"] == "application/apply-patch+yaml"
        assert request["query"]["fieldManager"] == ["plinth-control-plane"]
        assert request["query"]["force"] == ["true"]
    deployment = api.requests[1]["body"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"plinth.dev/gpu": "L4"}


def test_apply_failure_is_a_cluster_error_without_secret_values(
    driver: KubernetesDriver, fake_api: tuple[FakeApi, str]
) -> None:
    fake_api[0].fail_status = 403
    with pytest.raises(ClusterError, match="Secret models/plinth-dep1-secrets failed: 403") as info:
        driver.scale(SPEC, 1)
    assert "s3cr3t" not in str(info.value)


def test_replicas_map_pods_to_phases(
    driver: KubernetesDriver, fake_api: tuple[FakeApi, str]
) -> None:
    api, _ = fake_api
    api.pods = [
        _pod("p-ready", ip="10.0.0.5", ready=True, started=True, restarts=1),
        _pod("p-loading", ip="10.0.0.6", ready=False, started=True, created="2026-01-01T00:00:01Z"),
        _pod(
            "p-pulling",
            ip=None,
            ready=False,
            started=False,
            state={"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}},
            created="2026-01-01T00:00:02Z",
        ),
    ]
    states = driver.replicas("dep1")
    assert [(s.replica_id, s.phase, s.url, s.restarts) for s in states] == [
        ("p-ready", ReplicaPhase.READY, "http://10.0.0.5:8080", 1),
        ("p-loading", ReplicaPhase.LOADING, "http://10.0.0.6:8080", 0),
        ("p-pulling", ReplicaPhase.STARTING, "", 0),
    ]
    assert states[2].message == "ImagePullBackOff: back-off"
    [listing] = [r for r in api.requests if r["path"].endswith("/pods")]
    assert listing["path"] == "/api/v1/namespaces/models/pods"
    selector = set(listing["query"]["labelSelector"][0].split(","))
    assert "plinth.dev/deployment-id=dep1" in selector


def test_logs_read_each_pod(driver: KubernetesDriver, fake_api: tuple[FakeApi, str]) -> None:
    api, _ = fake_api
    api.pods = [
        _pod("p-a", ip="10.0.0.5", ready=True, started=True),
        _pod("p-b", ip="10.0.0.6", ready=True, started=True, created="2026-01-01T00:00:05Z"),
    ]
    lines = driver.logs("dep1", tail=4)
    assert lines == ["[p-a] p-a line 0", "[p-a] p-a line 1", "[p-b] p-b line 0", "[p-b] p-b line 1"]


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        ({"phase": "Failed", "message": "OOMKilled"}, ReplicaPhase.FAILED),
        (
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "message": "0/3 nodes have L4"}
                ],
            },
            ReplicaPhase.STARTING,
        ),
        (
            {
                "phase": "Pending",
                "containerStatuses": [
                    {"restartCount": 0, "state": {"waiting": {"reason": "InvalidImageName"}}}
                ],
            },
            ReplicaPhase.FAILED,
        ),
    ],
)
def test_pod_phase_mapping(status: dict[str, Any], phase: ReplicaPhase) -> None:
    state = pod_to_replica_state({"metadata": {"name": "p"}, "status": status}, "d", 8080)
    assert state.phase is phase and state.message


def test_terminating_pods_drain_and_are_never_ready(
    driver: KubernetesDriver, fake_api: tuple[FakeApi, str]
) -> None:
    pod = _pod("p-old", ip="10.0.0.9", ready=True, started=True)
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    fake_api[0].pods = [pod]
    [state] = driver.replicas("dep1")
    assert (state.replica_id, state.phase) == ("p-old", ReplicaPhase.DRAINING)
    assert "draining" in state.message


def test_cold_start_phases_come_from_the_pods_timestamps() -> None:
    pod = _pod(
        "p-new",
        ip="10.0.0.7",
        ready=True,
        started=True,
        created="2026-01-01T00:00:00Z",
        state={"running": {"startedAt": "2026-01-01T00:00:40Z"}},
    )
    pod["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T00:01:30Z"
    cold_start = pod_to_replica_state(pod, "dep1", 8080).cold_start
    assert cold_start is not None
    # Pulled and started 40 s after creation; loaded (weights included) 50 s later.
    assert cold_start.environment_ready_at == cold_start.scheduled_at + 40
    assert cold_start.model_loaded_at == cold_start.scheduled_at + 90
    assert cold_start.weights_ready_at is None
    pod["status"]["conditions"][0]["status"] = "False"
    assert pod_to_replica_state(pod, "dep1", 8080).cold_start.model_loaded_at is None  # type: ignore[union-attr]
    del pod["metadata"]["creationTimestamp"]
    assert pod_to_replica_state(pod, "dep1", 8080).cold_start is None


def test_pods_waiting_for_a_gpu_are_unschedulable() -> None:
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    state = pod_to_replica_state({"metadata": {"name": "p"}, "status": unschedulable}, "d", 8080)
    assert state.phase is ReplicaPhase.STARTING and state.unschedulable
    assert "Insufficient nvidia.com/gpu" in state.message
    scheduled = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    state = pod_to_replica_state({"metadata": {"name": "p"}, "status": scheduled}, "d", 8080)
    assert not state.unschedulable
