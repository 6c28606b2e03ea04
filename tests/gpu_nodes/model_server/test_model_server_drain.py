"""The preStop hook (``python -m gpu_nodes.model_server.drain``): tick by tick with a fake clock,
then as a subprocess against a real model server with a request in flight."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from gpu_nodes.model_server.drain import wait_drained
from gpu_nodes.model_server.testing import ModelServerProcess


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("readings", "timeout_s", "expected", "ends_at"),
    [
        ([0], 30, "drained after 5.0s", 5.0),  # idle: only the settle time
        ([2, 1, 0], 30, "drained after 6.0s", 6.0),  # two polls of 0.5 s
        ([None], 30, "drained after 5.0s", 5.0),  # not answering: nothing to wait for
        ([3] * 100, 7, "drain timeout (7s) with 3 in flight", 7.0),
        ([1] * 100, 2, "drain timeout (2s) with 1 in flight", 2.0),  # settle cut to the timeout
    ],
)
def test_waits_for_settle_then_in_flight_zero_bounded_by_the_timeout(
    readings: list[int | None], timeout_s: float, expected: str, ends_at: float
) -> None:
    clock = FakeClock()
    it = iter(readings)
    why = wait_drained(
        lambda: next(it), settle_s=5, timeout_s=timeout_s, clock=clock, sleep=clock.sleep
    )
    assert why == expected and clock.now - 100.0 == pytest.approx(ends_at)


SLEEPY = """
import time


class Model:
    def predict(self, model_input):
        time.sleep(float(model_input["sleep"]))
        return {"slept": model_input["sleep"]}
"""


@pytest.mark.integration
def test_the_hook_returns_once_the_request_in_flight_has_answered(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "model").mkdir(parents=True)
    (tmp_path / "pkg" / "config.yaml").write_text("model_name: sleepy\n")
    (tmp_path / "pkg" / "model" / "model.py").write_text(textwrap.dedent(SLEEPY))
    server = ModelServerProcess(tmp_path / "pkg", log_path=tmp_path / "server.log")
    try:
        server.wait_ready()
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                httpx.post, f"{server.url}/v1/models/model:predict", json={"sleep": 3}, timeout=30
            )
            time.sleep(0.5)
            started = time.monotonic()
            hook = subprocess.run(
                [sys.executable, "-m", "gpu_nodes.model_server.drain", "--port", str(server.port),
                 "--settle", "0", "--timeout", "20"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            waited = time.monotonic() - started
            assert held.done() and held.result().status_code == 200
        assert hook.returncode == 0 and "plinth preStop: drained after" in hook.stdout
        assert 1.0 < waited < 15
    finally:
        server.stop()
