"""Zero failed requests through a promotion and a rollback, with every real part.

The real control plane (SQLite, blob dir, venv builder, local process driver, real model
servers) and a real gateway subprocess polling ``GET /v1/routing`` once a second. While
client threads call ``/models/{id}/production/predict`` through the gateway, a second
deployment is promoted and then rolled back; the replaced deployment keeps its replicas
for the drain period (gateways with a stale table still reach it), then it is retired.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.control_plane.api.cp_api_helpers import (
    ADMIN_KEY,
    INTERNAL_TOKEN,
    RunningControlPlane,
    start_control_plane,
    upload_and_push,
    wait_for,
    write_package,
)
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

DRAIN_S = 3.0
DEPLOY_TIMEOUT_S = 120.0
LOAD_CAP_S = 90.0  # the load threads stop by themselves after this, whatever happens
CLIENT_THREADS = 2


@dataclass
class Reply:
    at: float  # time.monotonic()
    status: int  # HTTP status, or -1 when no response came back
    version: int | None
    detail: str = ""


@dataclass
class LoadGenerator:
    """Client threads sending predicts through the gateway until stopped (bounded)."""

    url: str
    replies: list[Reply] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> LoadGenerator:
        for _ in range(CLIENT_THREADS):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Reply]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        with self._lock:
            return list(self.replies)

    def versions_since(self, since: float) -> set[int | None]:
        with self._lock:
            return {r.version for r in self.replies if r.at >= since and r.status == 200}

    def wait_until_served(self, timeout_s: float) -> None:
        """One request at a time until one succeeds (the gateway has polled the table)."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(headers={"Authorization": f"Api-Key {ADMIN_KEY}"}, timeout=30) as c:
            while (reply := self._one(c, 0)).status != 200:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the gateway does not route {self.url}: {reply}")
                time.sleep(0.2)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_CAP_S
        headers = {"Authorization": f"Api-Key {ADMIN_KEY}"}
        with httpx.Client(headers=headers, timeout=30) as client:
            x = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                x += 1
                reply = self._one(client, x)
                with self._lock:
                    self.replies.append(reply)
                self._stop.wait(0.01)  # leave the shared CPU some air

    def _one(self, client: httpx.Client, x: int) -> Reply:
        try:
            response = client.post(self.url, json={"x": x})
        except httpx.HTTPError as exc:
            return Reply(time.monotonic(), -1, None, f"{type(exc).__name__}: {exc}")
        if response.status_code != 200:
            return Reply(time.monotonic(), response.status_code, None, response.text[:300])
        body = response.json()
        assert body["doubled"] == 2 * x, body
        return Reply(time.monotonic(), 200, body["version"])


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningControlPlane]:
    running, stop = start_control_plane(
        tmp_path_factory.mktemp("state"), run_background_workers=True, promotion_drain_s=DRAIN_S
    )
    yield running
    stop()


@pytest.fixture
def gateway_url(cp: RunningControlPlane, tmp_path: Path) -> Iterator[str]:
    """A real gateway process in front of the control plane (stopped in teardown)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gpu_nodes.gateway",
        "--control-plane-url",
        cp.url,
        "--port",
        str(port),
        "--internal-token",
        INTERNAL_TOKEN,
        "--poll-interval",
        "1.0",
    ]
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url, process), timeout_s=30, what="the gateway to start")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _healthy(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"gateway exited with {process.returncode}")
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def deployment(cp: RunningControlPlane, model_id: str, dep_id: str) -> dict[str, Any]:
    response = cp.client.get(f"/v1/models/{model_id}/deployments/{dep_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def production_is(cp: RunningControlPlane, model_id: str, dep_id: str) -> bool:
    env = cp.client.get(f"/v1/models/{model_id}/environments/production").json()
    return bool(env["current_deployment_id"] == dep_id and not env["promotion_in_progress"])


def replica_processes(cp: RunningControlPlane, dep_id: str) -> list[psutil.Process]:
    """The model-server processes the local driver runs for ``dep_id`` (its package dir)."""
    model_dir = str(cp.platform.settings.state_dir / "builds" / dep_id / "src")
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if model_dir in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def check_draining(cp: RunningControlPlane, model_id: str, dep_id: str) -> float:
    """Just replaced in production: still ACTIVE with its replica, scale-down scheduled.

    Returns when the drain ends (epoch seconds).
    """
    env = cp.client.get(f"/v1/models/{model_id}/environments/production").json()
    scale_down_at = env["history"][-1]["promoted_at"] + DRAIN_S
    draining = deployment(cp, model_id, dep_id)
    if time.time() > scale_down_at - 0.5:  # this test ran too slowly to look inside the drain
        return scale_down_at
    assert (draining["status"], draining["desired_replica_count"]) == ("ACTIVE", 1), draining
    assert draining["scale_down_at"] == pytest.approx(scale_down_at), draining
    assert draining["active_replica_count"] == 1 and not draining["is_production"]
    return scale_down_at


def push_to_production(cp: RunningControlPlane, tmp_path: Path, version: int) -> tuple[str, str]:
    package = write_package(tmp_path / f"v{version}", "drainer", metadata={"version": version})
    pushed = upload_and_push(cp.client, package, tmp_path / f"a{version}", promote=True)
    return pushed["model_id"], pushed["deployment"]["id"]


def test_promotion_and_rollback_fail_no_request(
    cp: RunningControlPlane, gateway_url: str, tmp_path: Path
) -> None:
    model_id, d1 = push_to_production(cp, tmp_path, 1)
    wait_for(lambda: production_is(cp, model_id, d1), timeout_s=DEPLOY_TIMEOUT_S, what="d1 live")
    load = LoadGenerator(f"{gateway_url}/models/{model_id}/production/predict")
    # The gateway learns about the model on its next poll; only then does the load start.
    load.wait_until_served(timeout_s=30)
    load.start()
    try:
        # Promotion: d2 is pushed with promote=true and swapped in once ACTIVE.
        _, d2 = push_to_production(cp, tmp_path, 2)
        wait_for(
            lambda: production_is(cp, model_id, d2), timeout_s=DEPLOY_TIMEOUT_S, what="d2 live"
        )
        d1_drain_ends = check_draining(cp, model_id, d1)
        swapped_at = time.monotonic()
        wait_for(lambda: 2 in load.versions_since(swapped_at), timeout_s=30, what="v2 served")

        # Rollback: promote d1 again (immediate while it drains, else brought up first).
        d1_pids = {p.pid for p in replica_processes(cp, d1)}
        sent_at = time.time()
        response = cp.client.post(
            f"/v1/models/{model_id}/environments/production/promote", json={"deployment_id": d1}
        )
        in_drain = sent_at < d1_drain_ends - 1.0
        after_drain = sent_at > d1_drain_ends + 1.0  # in between: a race, either answer is right
        expected = {200} if in_drain else {202} if after_drain else {200, 202}
        assert response.status_code in expected, (sent_at - d1_drain_ends, response.text)
        wait_for(
            lambda: production_is(cp, model_id, d1),
            timeout_s=DEPLOY_TIMEOUT_S,
            what="rollback to d1",
        )
        rolled_back_at = time.monotonic()
        wait_for(lambda: 1 in load.versions_since(rolled_back_at), timeout_s=30, what="v1")
        # Keep the load on while d2 drains and its replicas are stopped.
        wait_for(
            lambda: deployment(cp, model_id, d2)["status"] == "INACTIVE",
            timeout_s=DRAIN_S + 30,
            what="d2 retired after its drain",
        )
        wait_for(lambda: not replica_processes(cp, d2), timeout_s=30, what="d2 stopped")
        time.sleep(1.5)  # a gateway poll and more after the stop
    finally:
        replies = load.stop()

    failed = [r for r in replies if r.status != 200]
    assert not failed, f"{len(failed)} of {len(replies)} requests failed: {failed[:5]}"
    assert len(replies) > 50, len(replies)
    served = [r.version for r in replies]
    assert {1, 2} <= set(served)
    assert served.index(2) < len(served) - 1 - served[::-1].index(1)  # v1, then v2, then v1
    assert served[-1] == 1

    retired = deployment(cp, model_id, d2)
    assert (retired["status"], retired["desired_replica_count"]) == ("INACTIVE", 0)
    assert retired["scale_down_at"] is None and retired["active_replica_count"] == 0
    kept = deployment(cp, model_id, d1)
    assert (kept["status"], kept["is_production"], kept["scale_down_at"]) == ("ACTIVE", True, None)
    running = {p.pid for p in replica_processes(cp, d1)}
    assert running, "the rolled-back deployment keeps running"
    if in_drain:  # its retirement was cancelled: the very same replicas served throughout
        assert running == d1_pids
