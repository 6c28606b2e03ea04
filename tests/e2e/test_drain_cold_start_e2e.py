"""Drain before removal and cold-start phases, end to end on `plinth up` (local driver).

A model whose predict sleeps as long as asked (predict_concurrency 1) runs two replicas
(min = max = 2). Each replica's start shows up as the deployment's ``cold_start`` and in the
scaling history. Both replicas get a long request; the count is then set to one. The replica
chosen for removal drains: the routing table stops listing it as ready, the requests sent after
that all go to the other replica, its own long request completes with 200, and then it is gone.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from plinth.local import LocalPlatform

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]
SLEEPY_MODEL = """
import os
import time


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        time.sleep(0.5)

    def predict(self, model_input):
        time.sleep(float(model_input.get("sleep", 0)))
        return {"pid": os.getpid()}
"""
CONFIG = """model_name: sleepy
resources:
  cpu: "1"
  memory: 512Mi
runtime:
  predict_concurrency: 1
"""
LONG_S = 8.0


def _wait(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _routed_replicas(platform: LocalPlatform, mid: str, dep_id: str) -> list[dict[str, Any]]:
    ep = platform.endpoints
    table = httpx.get(
        f"{ep.control_plane_url}/v1/routing",
        headers={"Authorization": f"Bearer {ep.internal_token}"},
    ).json()
    deployment = table["models"].get(mid, {}).get("deployments", {}).get(dep_id, {})
    return list(deployment.get("replicas", []))


def test_a_removed_replica_drains_and_cold_starts_are_timed(
    cli: Cli,
    api: httpx.Client,
    gateway: httpx.Client,
    platform: LocalPlatform,
    tmp_path: Path,
) -> None:
    package = tmp_path / "sleepy"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(SLEEPY_MODEL)
    (package / "config.yaml").write_text(CONFIG)
    cli("push", str(package))
    model = next(m for m in api.get("/v1/models").json()["models"] if m["name"] == "sleepy")
    mid = model["id"]
    (dep,) = api.get(f"/v1/models/{mid}/deployments").json()["deployments"]
    path = f"/v1/models/{mid}/deployments/{dep['id']}"
    two = {"min_replica": 2, "max_replica": 2, "scale_down_delay": 0}
    assert api.patch(f"{path}/autoscaling_settings", json=two).status_code == 200
    _wait(lambda: api.get(path).json()["active_replica_count"] == 2, timeout_s=120, what="2 up")

    # Cold start: on the deployment, in the history (API and CLI).
    cold_start = _wait(lambda: api.get(path).json()["cold_start"], timeout_s=10, what="timed")
    seconds = cold_start["seconds"]
    assert seconds["total"] >= seconds["model_load"] >= 0.5  # load() sleeps 0.5 s
    assert seconds["environment"] > 0 and seconds["weights"] is not None
    starts = [
        e for e in api.get(f"{path}/scaling_events").json()["scaling_events"] if e.get("cold_start")
    ]
    assert len(starts) >= 2 and "cold start: environment" in starts[-1]["reason"]
    assert "cold start: environment" in cli("logs", mid, dep["id"], "--scaling").stdout

    predict = f"/models/{mid}/deployment/{dep['id']}/predict"
    _wait(
        lambda: len([r for r in _routed_replicas(platform, mid, dep["id"]) if r["ready"]]) == 2,
        timeout_s=20,
        what="2 replicas routed",
    )
    time.sleep(1.5)  # the gateway polls its routing table every second: it sees both
    with ThreadPoolExecutor(6) as pool:
        long = [pool.submit(gateway.post, predict, json={"sleep": LONG_S}) for _ in range(2)]
        time.sleep(1.0)  # one long request on each replica (least outstanding first)
        one = {"min_replica": 1, "max_replica": 1}
        assert api.patch(f"{path}/autoscaling_settings", json=one).status_code == 200
        routed = _wait(
            lambda: [r for r in _routed_replicas(platform, mid, dep["id"]) if not r["ready"]],
            timeout_s=10,
            what="a replica draining",
        )
        draining_url = routed[0]["url"]
        time.sleep(1.5)  # the gateway polls its routing table every second
        short = [pool.submit(gateway.post, predict, json={"sleep": 0}) for _ in range(3)]
        long_answers = [f.result() for f in long]
        short_answers = [f.result() for f in short]
    assert [a.status_code for a in long_answers + short_answers] == [200] * 5
    kept_pid = {a.json()["pid"] for a in short_answers}
    assert len(kept_pid) == 1  # every new request went to the replica that stays
    drained_pid = ({a.json()["pid"] for a in long_answers} - kept_pid).pop()
    _wait(
        lambda: draining_url not in {r["url"] for r in _routed_replicas(platform, mid, dep["id"])},
        timeout_s=20,
        what="drained replica gone",
    )
    _wait(lambda: not psutil.pid_exists(drained_pid), timeout_s=10, what="its process stopped")
    assert psutil.pid_exists(kept_pid.pop())
