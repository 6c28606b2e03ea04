"""One `plinth up` per state dir: a second one refuses at once and the first keeps serving;
a lock left by a SIGKILLed instance is taken over (its leftover processes stopped)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.servers import free_port

RunCli = Callable[..., subprocess.CompletedProcess[str]]
REPO_ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 90.0

pytestmark = pytest.mark.integration


class UpProcess:
    """`plinth up` as a subprocess on fresh ports, output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, cwd: Path) -> None:
        self.cp_port, self.gw_port = free_port(), free_port()
        command = [sys.executable, "-m", "plinth.cli.main", "up"]
        command += ["--port", str(self.cp_port), "--gateway-port", str(self.gw_port)]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=out)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, state: Path) -> dict[str, Any]:
        """Wait for cli.json to name this instance's control plane."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = f"http://127.0.0.1:{self.cp_port}"
        while True:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, f"plinth up not up in time: {self.output()}"
            path = state / "cli.json"
            if path.exists():
                saved = json.loads(path.read_text())
                if saved["control_plane_url"] == url:
                    return dict(saved)
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture
def ups(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], UpProcess]]:
    started: list[UpProcess] = []

    def start(name: str) -> UpProcess:
        started.append(UpProcess(cli_env, tmp_path / f"{name}.log", tmp_path))
        return started[-1]

    yield start
    for up in reversed(started):
        up.stop()


def test_second_up_refuses_and_first_keeps_serving(
    cli_env: dict[str, str], run_cli: RunCli, ups: Callable[[str], UpProcess]
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    first = ups("first")
    first_saved = first.wait_up(state)
    pushed = run_cli("push", str(REPO_ROOT / "examples" / "hello"), "--promote", "--timeout", "120")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    model_id = _model_id(run_cli)
    cli_json_before = (state / "cli.json").read_bytes()

    second = ups("second")
    started = time.monotonic()
    returncode = second.proc.wait(timeout=30)
    assert returncode != 0
    assert time.monotonic() - started < 15, "the refusal must come at once, not after a wait"
    out = second.output()
    assert f"already running (pid {first.proc.pid}, control plane URL" in out, out
    assert str(first_saved["control_plane_url"]) in out
    assert (state / "cli.json").read_bytes() == cli_json_before

    predicted = run_cli("predict", model_id, "--data", '{"x": 3}')
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr


def _model_id(run_cli: RunCli, name: str = "hello") -> str:
    listed = run_cli("models")
    assert listed.returncode == 0, listed.stderr
    for line in listed.stdout.splitlines():
        if f" {name} " in f" {line} ".replace("│", " "):
            return line.replace("│", " ").split()[0]
    raise AssertionError(f"no {name} model in:\n{listed.stdout}")


def test_lock_of_a_killed_up_is_taken_over(
    cli_env: dict[str, str], run_cli: RunCli, ups: Callable[[str], UpProcess]
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    killed = ups("killed")
    saved = killed.wait_up(state)
    leftovers = [psutil.Process(int(pid)) for pid in saved["pids"].values()]
    killed.proc.kill()  # SIGKILL: no cleanup; its control plane and gateway outlive it
    killed.proc.wait(timeout=10)
    assert all(proc.is_running() for proc in leftovers)

    successor = ups("successor")
    successor.wait_up(state)
    _gone, alive = psutil.wait_procs(leftovers, timeout=5)
    assert alive == [], "the killed instance's control plane and gateway were left running"
    listed = run_cli("models")
    assert listed.returncode == 0, listed.stdout + listed.stderr


@pytest.mark.parametrize("flag", ["--port", "--gateway-port"])
def test_taken_port_fails_at_once_naming_port_and_flag(
    cli_env: dict[str, str], tmp_path: Path, flag: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--gateway-port" if flag == "--port" else "--port"
        command = [sys.executable, "-m", "plinth.cli.main", "up", flag, str(port)]
        command += [other, str(free_port())]
        started = time.monotonic()
        done = subprocess.run(
            command, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
    assert time.monotonic() - started < 15
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert f"port {port}" in out and f"({flag})" in out and "already in use" in out, out
    assert not (Path(cli_env["PLINTH_STATE_DIR"]) / "cli.json").exists()


SLOW_MODEL = """
import time


class Model:
    def predict(self, model_input):
        time.sleep(200)
        return {"done": True}
"""


def test_up_stops_within_5_s_with_an_abandoned_predict_in_flight(
    cli_env: dict[str, str], run_cli: RunCli, ups: Callable[[str], UpProcess], tmp_path: Path
) -> None:
    state = Path(cli_env["PLINTH_STATE_DIR"])
    up = ups("slow")
    saved = up.wait_up(state)
    package = tmp_path / "slow"
    (package / "model").mkdir(parents=True)
    (package / "model" / "model.py").write_text(SLOW_MODEL)
    (package / "config.yaml").write_text("model_name: slow\n")
    pushed = run_cli("push", str(package), "--promote", "--timeout", "120")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    predicted = run_cli("predict", _model_id(run_cli, "slow"), "--data", "{}", "--timeout", "3")
    assert predicted.returncode != 0  # like `curl -m 3`: the client gave up, the predict runs on
    assert "no answer from" in predicted.stderr, predicted.stderr
    everything = psutil.Process(up.proc.pid).children(recursive=True)
    everything += [psutil.Process(int(pid)) for pid in saved["pids"].values()]
    replicas = [p for p in everything if "gpu_nodes.model_server" in " ".join(p.cmdline())]
    assert replicas, "no replica process found"
    started = time.monotonic()
    up.proc.send_signal(signal.SIGINT)
    up.proc.wait(timeout=30)
    _gone, alive = psutil.wait_procs(everything + replicas, timeout=30)
    elapsed = time.monotonic() - started
    assert alive == []
    assert elapsed < 5, f"plinth up took {elapsed:.1f} s to stop"
