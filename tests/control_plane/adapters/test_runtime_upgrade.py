"""An environment built by an earlier platform version still starts replicas after an upgrade.

A venv links the model server's runtime at build time. When the platform later adds a
runtime package (it added prometheus-client), a replica of an existing deployment started
from the old venv died with ModuleNotFoundError. The local driver now relinks such a venv.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from control_plane.adapters.builder import EnvironmentBuilder
from control_plane.adapters.local_cluster import LocalProcessDriver
from control_plane.adapters.model_runtime import (
    RUNTIME_DIR,
    RUNTIME_RECORD,
    current_runtime,
    refresh_runtime,
)
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec

pytestmark = pytest.mark.integration


def _imports(python: Path, module: str) -> bool:
    done = subprocess.run([str(python), "-c", f"import {module}"], cwd="/", capture_output=True)
    return done.returncode == 0


def _age(venv_dir: Path, *, keep_record: bool) -> None:
    """Make ``venv_dir`` look built by a platform that had no prometheus-client."""
    (venv_dir / RUNTIME_DIR / "prometheus_client").unlink()
    if keep_record:
        (venv_dir / RUNTIME_RECORD).write_text(json.dumps({"engine": False, "identity": "v0"}))
    else:
        (venv_dir / RUNTIME_RECORD).unlink()


@pytest.fixture
def built(tmp_path: Path) -> Path:
    env = EnvironmentBuilder(tmp_path / "envs").build([], log=lambda _: None)
    return env.venv_dir


def test_a_fresh_environment_records_its_runtime_and_is_not_relinked(built: Path) -> None:
    record = json.loads((built / RUNTIME_RECORD).read_text())
    assert record == {"engine": False, "identity": current_runtime(False).identity}
    assert refresh_runtime(built) is False


@pytest.mark.parametrize("keep_record", [True, False], ids=["older-record", "no-record"])
def test_a_stale_environment_is_relinked_once(built: Path, keep_record: bool) -> None:
    _age(built, keep_record=keep_record)
    python = built / "bin" / "python"
    assert not _imports(python, "prometheus_client")
    assert refresh_runtime(built) is True
    assert _imports(python, "prometheus_client") and _imports(python, "gpu_nodes.model_server")
    assert refresh_runtime(built) is False
    assert not (built / f"{RUNTIME_DIR}.new").exists()
    assert not (built / f"{RUNTIME_DIR}.old").exists()


def test_not_a_plinth_environment_is_left_alone(tmp_path: Path) -> None:
    assert refresh_runtime(tmp_path) is False
    assert list(tmp_path.iterdir()) == []


def test_local_driver_starts_a_replica_from_an_environment_built_before_an_upgrade(
    built: Path, tmp_path: Path
) -> None:
    _age(built, keep_record=False)
    package = tmp_path / "hello"
    (package / "model").mkdir(parents=True)
    (package / "config.yaml").write_text("model_name: hello\n")
    (package / "model" / "model.py").write_text(
        textwrap.dedent(
            """
            class Model:
                def predict(self, model_input):
                    return {"echo": model_input}
            """
        )
    )
    spec = ReplicaSpec(
        deployment_id="dep-old",
        model_id="m-1",
        model_dir=str(package),
        python=str(built / "bin" / "python"),
    )
    driver = LocalProcessDriver(tmp_path / "state", poll_interval_s=0.1, max_restarts=0)
    try:
        driver.scale(spec, 1)
        deadline = time.monotonic() + 45
        while (states := driver.replicas("dep-old"))[0].phase is not ReplicaPhase.READY:
            assert states[0].phase is not ReplicaPhase.FAILED, driver.logs("dep-old")
            assert time.monotonic() < deadline, driver.logs("dep-old")
            time.sleep(0.1)
        answer = httpx.post(f"{states[0].url}/v1/models/model:predict", json={"x": 1})
        assert answer.json() == {"echo": {"x": 1}}
        assert any("relinked" in line for line in driver.logs("dep-old"))
    finally:
        driver.close()
