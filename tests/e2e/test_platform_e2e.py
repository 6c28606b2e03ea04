"""The platform end to end: the real CLI against a running `plinth up`.

One platform per module; the tests run in file order (xdist --dist loadfile) and build on
each other: push → predict → stream → second push → promote → rollback → races and failures
→ replica killed → control plane stopped (last, since it takes the control plane away).
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import httpx
import psutil
import pytest

from plinth.local import LocalPlatform

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
Cli = Callable[..., subprocess.CompletedProcess[str]]

EXAMPLES = REPO_ROOT / "examples"
STATE: dict[str, str] = {}


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 60) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"condition not met within {timeout_s} s")


def model_id(api: httpx.Client, name: str) -> str:
    models = api.get("/v1/models").json()["models"]
    return next(m["id"] for m in models if m["name"] == name)


def deployments(api: httpx.Client, mid: str) -> list[dict]:
    return list(api.get(f"/v1/models/{mid}/deployments").json()["deployments"])


def production_deployment(api: httpx.Client, mid: str) -> str:
    env = api.get(f"/v1/models/{mid}/environments/production").json()
    current = env["current_deployment"]
    return str(current["id"] if isinstance(current, dict) else current)


def versioned_hello(tmp_path: Path, version: str) -> Path:
    """A copy of examples/hello whose predictions carry ``version``."""
    package = tmp_path / f"hello-{version}"
    shutil.copytree(EXAMPLES / "hello", package)
    config = package / "config.yaml"
    text = config.read_text()
    config.write_text(text + f"\nenvironment_variables:\n  HELLO_VERSION: {version}\n")
    model_py = package / "model" / "model.py"
    model_py.write_text(
        model_py.read_text()
        + "\n\n_original_predict = Model.predict\n\n"
        + "def _predict_with_version(self, model_input):\n"
        + "    import os\n"
        + "    out = _original_predict(self, model_input)\n"
        + "    return {'version': os.environ.get('HELLO_VERSION'), 'output': out}\n\n"
        + "Model.predict = _predict_with_version\n"
    )
    return package


def predict_version(gateway: httpx.Client, mid: str) -> str | None:
    """The version production answers with (None: the unversioned examples/hello)."""
    resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
    assert resp.status_code == 200, resp.text
    return resp.json().get("version")


def test_push_promote_and_predict(cli: Cli, api: httpx.Client, gateway: httpx.Client) -> None:
    out = cli("push", str(EXAMPLES / "hello"), "--promote")
    assert "ACTIVE" in out.stdout
    mid = model_id(api, "hello")
    STATE["hello"] = mid
    resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("x-request-id")
    # The same path under the model's own host name.
    host = gateway.post(
        "/production/predict", json={"x": 1}, headers={"Host": f"model-{mid}.plinth.localhost"}
    )
    assert host.status_code == 200 and host.json() == resp.json()
    # No key, wrong key: refused by the gateway.
    url = f"{str(gateway.base_url).rstrip('/')}/models/{mid}/production/predict"
    bare = httpx.post(url, json={"x": 1})
    assert bare.status_code == 401
    wrong = httpx.post(url, json={"x": 1}, headers={"Authorization": "Api-Key not-a-key"})
    assert wrong.status_code == 401
    unknown = gateway.post("/models/nosuchmodel/production/predict", json={"x": 1})
    assert unknown.status_code == 404


def test_streaming_model_streams(cli: Cli, api: httpx.Client, gateway: httpx.Client) -> None:
    cli("push", str(EXAMPLES / "streaming"), "--promote")
    mid = model_id(api, "streaming")
    chunks: list[bytes] = []
    with gateway.stream("POST", f"/models/{mid}/production/predict", json={"n": 5}) as resp:
        assert resp.status_code == 200
        chunks.extend(resp.iter_raw())
    assert len(b"".join(chunks)) > 0
    assert len(chunks) >= 2, "the response arrived in one piece: not streamed"


def test_second_push_promote_and_rollback(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    v1 = versioned_hello(tmp_path, "v1")
    v2 = versioned_hello(tmp_path, "v2")
    cli("push", str(v1), "--promote")
    mid = STATE["hello"]
    # Gateways pick up the new routing table within their poll interval.
    wait_until(lambda: predict_version(gateway, mid) == "v1")
    first = production_deployment(api, mid)
    cli("push", str(v2))  # development deployment; production unchanged
    assert predict_version(gateway, mid) == "v1"
    # The deployment just pushed is the newest one, now the development deployment.
    second = max(deployments(api, mid), key=lambda d: d["created_at"])["id"]
    assert second != first
    cli("promote", mid, second, "--environment", "production")
    wait_until(lambda: predict_version(gateway, mid) == "v2")
    assert production_deployment(api, mid) == second
    wait_until(
        lambda: next(d for d in deployments(api, mid) if d["id"] == first)["status"] == "INACTIVE"
    )
    cli("rollback", mid, "--environment", "production")
    wait_until(lambda: predict_version(gateway, mid) == "v1", timeout_s=120)
    STATE["v1"], STATE["v2"] = first, second


def test_concurrent_promotions_one_conflict(api: httpx.Client, gateway: httpx.Client) -> None:
    mid = STATE["hello"]
    target = STATE["v2"]
    # Scaled to zero, the target takes seconds to come up: the promotion holds the
    # environment all that time, so the two requests below really overlap.
    api.post(f"/v1/models/{mid}/deployments/{target}/deactivate").raise_for_status()
    wait_until(
        lambda: api.get(f"/v1/models/{mid}/deployments/{target}").json()["status"] == "INACTIVE"
    )

    def promote(_: int) -> int:
        resp = api.post(
            f"/v1/models/{mid}/environments/production/promote", json={"deployment_id": target}
        )
        return resp.status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        codes = sorted(pool.map(promote, range(2)))
    assert codes[1] == 409 and codes[0] < 300, codes
    # The winner completes once the target is ACTIVE; the loser changed nothing.
    wait_until(lambda: predict_version(gateway, mid) == "v2", timeout_s=120)
    assert production_deployment(api, mid) == target


def test_build_failure_leaves_production_alone(
    cli: Cli, api: httpx.Client, gateway: httpx.Client, tmp_path: Path
) -> None:
    mid = STATE["hello"]
    wait_until(
        lambda: (
            api.get(f"/v1/models/{mid}/environments/production").json().get("promotion_in_progress")
            in (None, False)
        )
    )
    before = production_deployment(api, mid)
    package = tmp_path / "broken"
    shutil.copytree(EXAMPLES / "hello", package)
    with (package / "config.yaml").open("a") as config:
        config.write("\nrequirements:\n  - plinth-no-such-package-anywhere==9.9.9\n")
    out = cli("push", str(package), "--promote", check=False)
    assert out.returncode != 0
    assert "plinth-no-such-package-anywhere" in out.stdout + out.stderr
    failed = [d for d in deployments(api, mid) if d["status"] == "FAILED"]
    assert failed, "the broken deployment is not FAILED"
    assert production_deployment(api, mid) == before
    assert gateway.post(f"/models/{mid}/production/predict", json={"x": 1}).status_code == 200


def test_bad_config_clear_error(cli: Cli, tmp_path: Path) -> None:
    package = tmp_path / "badconfig"
    shutil.copytree(EXAMPLES / "hello", package)
    with (package / "config.yaml").open("a") as config:
        config.write("\nruntime:\n  predict_concurrency: lots\n")
    out = cli("push", str(package), check=False)
    assert out.returncode != 0
    message = out.stdout + out.stderr
    assert "predict_concurrency" in message and "line" in message


def test_tar_slip_archive_refused(api: httpx.Client, platform: LocalPlatform) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = b"pwned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        config = b"model_name: evil\n"
        info = tarfile.TarInfo("config.yaml")
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
    body = buf.getvalue()
    digest = sha256(body).hexdigest()
    upload = api.put(f"/v1/archives/{digest}", content=body)
    if upload.status_code < 300:
        resp = api.post(
            "/v1/deployments",
            json={"model_name": "evil", "archive_sha256": digest, "config": {"model_name": "evil"}},
        )
        if resp.status_code < 300:
            dep = resp.json()["deployment"]
            mid = resp.json()["model_id"]
            wait_until(
                lambda: (
                    api.get(f"/v1/models/{mid}/deployments/{dep['id']}").json()["status"]
                    == "FAILED"
                )
            )
            logs = json.dumps(api.get(f"/v1/models/{mid}/deployments/{dep['id']}/logs").json())
            assert "escaped.txt" in logs
        else:
            assert resp.status_code == 400 and "escaped.txt" in resp.text
    else:
        assert upload.status_code == 400 and "escaped.txt" in upload.text
    assert not list(platform.state_dir.parent.rglob("escaped.txt"))
    assert not list(platform.state_dir.rglob("escaped.txt"))


def replica_pids(platform: LocalPlatform) -> list[int]:
    """Live model-server processes the control plane started (zombies and exited ones skipped)."""
    pids = []
    for child in psutil.Process(platform.control_plane.pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "gpu_nodes.model_server" in " ".join(
                child.cmdline()
            ):
                pids.append(child.pid)
        except psutil.Error:
            continue  # exited while we looked
    return pids


def test_killed_replica_is_restarted(platform: LocalPlatform, gateway: httpx.Client) -> None:
    mid = STATE["hello"]
    before = set(replica_pids(platform))
    assert before
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: bool(set(replica_pids(platform)) - before), timeout_s=60)

    def serves() -> bool:
        return gateway.post(f"/models/{mid}/production/predict", json={"x": 1}).status_code == 200

    wait_until(serves, timeout_s=90)


def test_gateway_serves_with_control_plane_down(
    platform: LocalPlatform, gateway: httpx.Client
) -> None:
    mid = STATE["hello"]
    orphans = [psutil.Process(pid) for pid in replica_pids(platform)]
    # A crash, not a shutdown: replicas are left running, as pods would be.
    platform.control_plane.send_signal(signal.SIGKILL)
    platform.control_plane.wait(timeout=10)
    try:
        for _ in range(5):
            resp = gateway.post(f"/models/{mid}/production/predict", json={"x": 1})
            assert resp.status_code == 200, resp.text
    finally:
        for proc in orphans:
            proc.kill()
        psutil.wait_procs(orphans, timeout=10)
