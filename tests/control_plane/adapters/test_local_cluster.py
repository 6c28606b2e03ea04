"""LocalProcessDriver against the real model server, in both local runtimes: ``process`` (the
package's venv) and ``container`` (an image built from the package, pushed to a loopback
registry and run from the image pulled back by digest). The two images are built once per
module; with the base image cached that adds about a minute."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from control_plane.adapters._local_replica import free_port
from control_plane.adapters.exceptions import ClusterError
from control_plane.adapters.local_cluster import LocalProcessDriver
from control_plane.ports.cluster import (
    ClusterDriver,
    CustomServer,
    ReplicaPhase,
    ReplicaSpec,
    ReplicaState,
)
from control_plane.ports.images import ImageRequest
from tests.support.images import local_registry, missing_image_tools, shared_image_cache

pytestmark = pytest.mark.integration

ECHO_MODEL = """
import os
from pathlib import Path


class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        print("echo model loaded", flush=True)

    def predict(self, model_input):
        secrets_dir = Path(os.environ["PLINTH_SECRETS_DIR"])
        return {
            "greeting": os.environ.get("GREETING"),
            "leaked": os.environ.get("PLINTH_TEST_CONTROL_PLANE_SECRET"),
            "token": (secrets_dir / "hf_token").read_text(),
            "pid": os.getpid(),
        }
"""

BROKEN_LOAD_MODEL = """
class Model:
    def __init__(self, **kwargs):
        pass

    def load(self):
        raise RuntimeError("weights are missing")

    def predict(self, model_input):
        return model_input
"""


def _package(root: Path, code: str) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "config.yaml").write_text(f"model_name: {root.name}\n")
    (root / "model" / "model.py").write_text(textwrap.dedent(code))
    return root


def _spec(model_dir: Path, deployment_id: str = "dep-1", **kw: object) -> ReplicaSpec:
    return ReplicaSpec(
        deployment_id=deployment_id,
        model_id="m-1",
        model_dir=str(model_dir),
        python=sys.executable,
        **kw,  # type: ignore[arg-type]
    )


SpecFor = Callable[..., ReplicaSpec]


class _ImageCache:
    """Images of the test packages, built on first use (one per model code)."""

    def __init__(self, registry: str, work_dir: Path) -> None:
        from control_plane.adapters.buildah_images import BuildahImageBuilder

        self._builder = BuildahImageBuilder(registry, work_dir / "builds", shared_image_cache())
        self._work_dir = work_dir
        self._built: dict[str, str] = {}

    def image_of(self, model_dir: Path) -> str:
        code = (model_dir / "model" / "model.py").read_bytes()
        key = hashlib.sha256(code).hexdigest()[:8]
        if key not in self._built:
            request = ImageRequest(f"dep{key}", "mdriver", model_dir)
            work = self._work_dir / key
            work.mkdir(parents=True)
            context = self._builder.prepare_context(request, work)
            self._built[key] = self._builder.build_and_push(context, request, lambda _: None)
        return self._built[key]


@pytest.fixture(scope="module")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_ImageCache]:
    if missing_image_tools():
        pytest.skip(f"image tools missing: {missing_image_tools()}")
    root = tmp_path_factory.mktemp("images")
    with local_registry(root / "registry") as registry:
        yield _ImageCache(registry, root)


@pytest.fixture(params=["process", "container"])
def spec_for(request: pytest.FixtureRequest) -> SpecFor:
    """``_spec`` in the runtime under test (container: the package's image, no host paths)."""
    if request.param == "process":
        return _spec
    cache: _ImageCache = request.getfixturevalue("image_cache")

    def container_spec(model_dir: Path, deployment_id: str = "dep-1", **kw: object) -> ReplicaSpec:
        image = cache.image_of(model_dir)
        return ReplicaSpec(deployment_id, "m-1", "", "", image=image, **kw)  # type: ignore[arg-type]

    return container_spec


def _wait_for(
    driver: ClusterDriver,
    deployment_id: str,
    check: Callable[[list[ReplicaState]], bool],
    timeout_s: float = 45.0,
) -> list[ReplicaState]:
    deadline = time.monotonic() + timeout_s
    while True:
        states = driver.replicas(deployment_id)
        if check(states):
            return states
        if time.monotonic() > deadline:
            logs = "\n".join(driver.logs(deployment_id, tail=40))
            raise AssertionError(f"timed out; replicas: {states}\nlogs:\n{logs}")
        time.sleep(0.1)


def _all_ready(count: int) -> Callable[[list[ReplicaState]], bool]:
    return lambda states: (
        len(states) == count and all(s.phase is ReplicaPhase.READY for s in states)
    )


def _server_pids(url_states: list[ReplicaState]) -> list[int]:
    return [
        httpx.post(f"{s.url}/v1/models/model:predict", json={}).json()["pid"] for s in url_states
    ]


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[LocalProcessDriver]:
    d = LocalProcessDriver(
        tmp_path / "state",
        restart_backoff_s=0.1,
        max_restarts=2,
        poll_interval_s=0.1,
        stop_grace_s=5,
        drain_settle_s=0.2,
    )
    yield d
    d.close()


@pytest.fixture
def echo_package(tmp_path: Path) -> Path:
    return _package(tmp_path / "echo", ECHO_MODEL)


def test_two_replicas_ready_with_env_and_secrets(
    spec_for: SpecFor,
    driver: LocalProcessDriver,
    echo_package: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLINTH_TEST_CONTROL_PLANE_SECRET", "must-not-leak")
    spec = spec_for(echo_package, env={"GREETING": "hi"}, secrets={"hf_token": "s3cr3t"})
    driver.scale(spec, 2)
    states = _wait_for(driver, "dep-1", _all_ready(2))
    assert len({s.url for s in states}) == 2 and all(s.restarts == 0 for s in states)
    for s in states:
        answer = httpx.post(f"{s.url}/v1/models/model:predict", json={}).json()
        assert answer["greeting"] == "hi" and answer["token"] == "s3cr3t"
        assert answer["leaked"] is None
        secrets_dir = tmp_path / "state" / "replicas" / s.replica_id / "secrets"
        assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((secrets_dir / "hf_token").stat().st_mode) == 0o600
        assert (tmp_path / "state" / "replicas" / s.replica_id / "replica.log").is_file()
    logs = driver.logs("dep-1", tail=100)
    assert any(line.startswith(f"[{states[0].replica_id}] ") for line in logs)
    assert any("echo model loaded" in line for line in logs)
    assert not any("s3cr3t" in line for line in logs)


def test_killed_replica_is_restarted(
    spec_for: SpecFor, driver: LocalProcessDriver, echo_package: Path
) -> None:
    spec = spec_for(echo_package, secrets={"hf_token": "t"})
    driver.scale(spec, 2)
    states = _wait_for(driver, "dep-1", _all_ready(2))
    victim_pid = _server_pids(states[:1])[0]
    os.kill(victim_pid, signal.SIGKILL)
    after = _wait_for(
        driver, "dep-1", lambda ss: _all_ready(2)(ss) and ss[0].restarts == 1, timeout_s=45
    )
    assert after[0].replica_id == states[0].replica_id and after[1].restarts == 0
    new_pid = _server_pids(after[:1])[0]
    assert new_pid != victim_pid and not psutil.pid_exists(victim_pid)
    logs = driver.logs("dep-1")
    # A container replica's process is buildah run, which reports its child's death itself.
    code = "-9" if spec.image is None else ""
    assert f"[{states[0].replica_id}] [plinth] process exited with code {code}" in "\n".join(logs)


def test_scale_down_drains_newest_idle_first_then_to_zero(
    spec_for: SpecFor, driver: LocalProcessDriver, echo_package: Path, tmp_path: Path
) -> None:
    spec = spec_for(echo_package, secrets={"hf_token": "t"})
    driver.scale(spec, 2)
    states = _wait_for(driver, "dep-1", _all_ready(2))
    pids = _server_pids(states)
    driver.scale(spec, 1)  # both idle: the newest goes, through DRAINING
    phases = [(s.replica_id, s.phase) for s in driver.replicas("dep-1")]
    assert phases == [
        (states[0].replica_id, ReplicaPhase.READY),
        (states[1].replica_id, ReplicaPhase.DRAINING),
    ]
    _wait_for(driver, "dep-1", lambda ss: [s.replica_id for s in ss] == [states[0].replica_id])
    assert not psutil.pid_exists(pids[1]) and psutil.pid_exists(pids[0])
    driver.scale(spec, 0)
    _wait_for(driver, "dep-1", lambda ss: ss == [])
    assert not psutil.pid_exists(pids[0])
    for state in states:  # secrets are removed with the replica; its log stays readable
        replica_dir = tmp_path / "state" / "replicas" / state.replica_id
        assert not (replica_dir / "secrets").exists() and (replica_dir / "replica.log").is_file()
    retired = "\n".join(driver.logs("dep-1"))
    assert f"[{states[0].replica_id}] " in retired and f"[{states[1].replica_id}] " in retired


def test_load_failure_is_reported_as_failed(
    spec_for: SpecFor, driver: LocalProcessDriver, tmp_path: Path
) -> None:
    spec = spec_for(_package(tmp_path / "broken", BROKEN_LOAD_MODEL), deployment_id="dep-bad")
    driver.scale(spec, 1)
    [state] = _wait_for(driver, "dep-bad", lambda ss: ss[0].phase is ReplicaPhase.FAILED)
    assert "weights are missing" in state.message and state.restarts == 0


def test_crash_loop_gives_up_after_max_restarts(driver: LocalProcessDriver, tmp_path: Path) -> None:
    spec = _spec(tmp_path / "does-not-exist", deployment_id="dep-crash")
    driver.scale(spec, 1)
    [state] = _wait_for(driver, "dep-crash", lambda ss: ss[0].phase is ReplicaPhase.FAILED)
    assert state.restarts == 2
    assert "exited with code" in state.message and "gave up" in state.message


def test_close_leaves_no_process(tmp_path: Path, echo_package: Path) -> None:
    def model_servers() -> set[psutil.Process]:
        children = psutil.Process().children(recursive=True)
        return {p for p in children if "gpu_nodes.model_server" in " ".join(p.cmdline())}

    # Session fixtures of other test files in this worker may run model servers too.
    others = model_servers()
    driver = LocalProcessDriver(tmp_path / "state", poll_interval_s=0.1)
    driver.scale(_spec(echo_package, secrets={"hf_token": "t"}), 2)
    driver.scale(_spec(echo_package, deployment_id="dep-2", secrets={"hf_token": "t"}), 1)
    _wait_for(driver, "dep-1", _all_ready(2))
    servers = list(model_servers() - others)
    assert len(servers) == 3
    driver.close()
    _gone, alive = psutil.wait_procs(servers, timeout=10)
    assert alive == []
    assert driver.replicas("dep-1") == []
    with pytest.raises(ClusterError, match="closed"):
        driver.scale(_spec(echo_package), 1)


def test_bad_arguments_are_refused(driver: LocalProcessDriver, echo_package: Path) -> None:
    with pytest.raises(ClusterError, match="replicas"):
        driver.scale(_spec(echo_package), -1)
    with pytest.raises(ClusterError, match=r"'\.\./x'"):
        driver.scale(_spec(echo_package, secrets={"../x": "v"}), 1)
    assert driver.replicas("dep-1") == []


def test_custom_server_on_port_and_fixed_port_runs_one_replica_at_a_time(
    driver: LocalProcessDriver, tmp_path: Path
) -> None:
    package = tmp_path / "custom"
    package.mkdir()
    (package / "hello.txt").write_text("from the package dir")
    server = CustomServer(
        # The interpreter named by the spec's python comes first on PATH.
        start_command='exec python -m http.server "$PORT" --bind "$HOST"',
        server_port=1,  # unused: the command listens on $PORT
        readiness_path="/hello.txt",
        liveness_path="/",
    )
    driver.scale(_spec(package, "dep-port", custom_server=server), 2)
    states = _wait_for(driver, "dep-port", _all_ready(2))
    assert len({s.url for s in states}) == 2
    assert httpx.get(f"{states[0].url}/hello.txt").text == "from the package dir"

    fixed_port = free_port("127.0.0.1")
    fixed = CustomServer(
        start_command=f"exec python -m http.server {fixed_port} --bind 127.0.0.1",
        server_port=fixed_port,
        readiness_path="/",
        liveness_path="/",
    )
    driver.scale(_spec(package, "dep-fixed", custom_server=fixed), 2)

    def one_ready_one_waiting(s: list[ReplicaState]) -> bool:
        # Both start together: whichever process binds the port first serves (under load,
        # not always the first started); the other finds it in use.
        ready = sorted(r.phase is ReplicaPhase.READY for r in s)
        return len(s) == 2 and ready == [False, True] and any("in use" in r.message for r in s)

    states = _wait_for(driver, "dep-fixed", one_ready_one_waiting)
    [ready] = [s for s in states if s.phase is ReplicaPhase.READY]
    [waiting] = [s for s in states if s.phase is not ReplicaPhase.READY]
    assert ready.url == f"http://127.0.0.1:{fixed_port}"
    assert f"server_port {fixed_port} is in use on 127.0.0.1" in waiting.message
    assert "$PORT" in waiting.message


def test_a_custom_server_with_an_image_runs_its_own_command_in_the_container() -> None:
    from control_plane.adapters._container_replica import container_command

    server = CustomServer("serve --port $PORT", 8000, "/ready", "/live")
    spec = ReplicaSpec("dep-c", "m-1", "", "", image="r/m@sha256:ab", custom_server=server)
    command = container_command("plinth-r", spec, Path("/tmp/r"), host="127.0.0.1", port=4321)
    assert command[-4:] == ["--", "/bin/sh", "-c", "serve --port $PORT"]
    assert "--env" in command and "PORT=4321" in command and "HOST=127.0.0.1" in command
    assert "gpu_nodes.model_server" not in " ".join(command)
