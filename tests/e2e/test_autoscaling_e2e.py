"""Autoscaling end to end on `plinth up`: from zero up on load, then down in steps to zero.

A model that sleeps 1 s per predict (predict_concurrency 1) is pushed, given short settings
(min 0, max 3, window 10 s, delay 3 s) through PATCH autoscaling_settings, and deactivated.
Twenty concurrent requests then wake it: the gateway parks them, reports the load, the
reconciler's autoscaler raises the count; all twenty are answered. The load stops and the
count falls back to zero in steps; the scaling history (API and `plinth logs --scaling`) shows
each step with its reason. Loopback only, bounded in time.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

Cli = Callable[..., subprocess.CompletedProcess[str]]
REQUESTS = 20
SLOW_MODEL = """
import time


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        pass

    def predict(self, model_input):
        time.sleep(1.0)
        return {"x": model_input.get("x")}
"""
CONFIG = """model_name: slow
model_class_name: Model
model_module_dir: model
resources:
  cpu: "1"
  memory: 512Mi
runtime:
  predict_concurrency: 1
"""


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def _push_slow_model(cli: Cli, api: httpx.Client, tmp_path: Path) -> tuple[str, str]:
    package = tmp_path / "slow"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(SLOW_MODEL)
    (package / "config.yaml").write_text(CONFIG)
    cli("push", str(package))
    model = next(m for m in api.get("/v1/models").json()["models"] if m["name"] == "slow")
    (dep,) = api.get(f"/v1/models/{model['id']}/deployments").json()["deployments"]
    return model["id"], dep["id"]


def test_replicas_follow_the_load_up_from_zero_and_back_down_in_steps(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    mid, dep_id = _push_slow_model(cli, api, tmp_path)
    path = f"/v1/models/{mid}/deployments/{dep_id}"
    settings = {
        "min_replica": 0,
        "max_replica": 3,
        "autoscaling_window": 10,
        "scale_down_delay": 3,
    }
    assert api.patch(f"{path}/autoscaling_settings", json=settings).status_code == 200
    assert api.post(f"{path}/deactivate").status_code == 200
    wait_until(
        lambda: api.get(path).json()["active_replica_count"] == 0, timeout_s=30, what="at zero"
    )
    time.sleep(2.5)  # the gateway's copy of the routing table (polled each second) follows
    started = time.monotonic()

    def predict(x: int) -> httpx.Response:
        return gateway.post(f"/models/{mid}/deployment/{dep_id}/predict", json={"x": x})

    with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
        answers = list(pool.map(predict, range(REQUESTS)))
    failed = [a.text for a in answers if a.status_code != 200]
    history = api.get(f"{path}/scaling_events").json()["scaling_events"]
    assert not failed, (failed, history)
    assert sorted(a.json()["x"] for a in answers) == list(range(REQUESTS))

    def events() -> list[dict[str, Any]]:
        return list(api.get(f"{path}/scaling_events").json()["scaling_events"])

    peak = max(e["to_replicas"] for e in events())
    assert peak > 1, events()
    # The load has stopped: down in steps, then zero replicas and INACTIVE.
    wait_until(
        lambda: api.get(path).json()["status"] == "INACTIVE", timeout_s=90, what="back at zero"
    )
    assert time.monotonic() - started < 120
    history = events()
    changes = [(e["from_replicas"], e["to_replicas"]) for e in history]
    assert (0, 1) in changes, history
    woke = changes.index((0, 1))  # the wake from the parked requests
    assert "outside the autoscaler" in history[woke]["reason"]
    after = history[woke + 1 :]
    ups = [e for e in after if e["reason"].startswith("scale up")]
    assert ups and ups[0]["to_replicas"] == peak, history
    downs = [e for e in after if e["reason"].startswith("scale down")]
    assert len(downs) >= 2, history  # a staircase, not one drop
    assert downs[-1]["to_replicas"] == 0 and history[-1] == downs[-1], history
    for earlier, later in itertools.pairwise(downs):
        assert later["at"] - earlier["at"] >= settings["scale_down_delay"] - 0.5
    out = cli("logs", mid, dep_id, "--scaling").stdout
    assert out.count("scaling") >= len(history)
    assert f"{peak} -> " in out and "-> 0" in out and "scale down" in out
