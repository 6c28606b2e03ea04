"""The Lambda code asset ``infra.control_plane`` ships is enough to serve the API.

The packages named by ``CODE_PACKAGES`` are copied out of the repository the way the
``AssetArchive`` bundles them, and a separate interpreter imports ``lambdas.api`` from that
copy only (the repository's other packages are blocked, third-party ones come from the
environment as a layer would provide them) and answers an API Gateway event. The bundle has no
``gpu_nodes``: the control plane app and every Lambda import without it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.control_plane import CODE_PACKAGES, code_archive

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_PACKAGES = ("control_plane", "gpu_nodes", "infra", "lambdas", "plinth")

PROBE = r"""
import importlib.abc, json, sys
bundle, blocked, event = sys.argv[1], set(sys.argv[2].split(",")), json.loads(sys.argv[3])

class NotInBundle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is not in the Lambda bundle")
        return None

sys.meta_path.insert(0, NotInBundle())
sys.path.insert(0, bundle)
import lambdas.api
import control_plane
assert lambdas.api.__file__.startswith(bundle), lambdas.api.__file__
assert control_plane.__file__.startswith(bundle), control_plane.__file__
import lambdas.reconciler
import lambdas.async_worker
import control_plane.app, control_plane.wiring
assert not any(name.split(".")[0] == "gpu_nodes" for name in sys.modules), "gpu_nodes imported"
api_response = lambdas.api.handler(event, None)
reconcile_summary = lambdas.reconciler.handler({"source": "plinth.reconcile"}, None)
lambdas.reconciler._platform.get().close()
print(json.dumps({"api": api_response, "reconcile": reconcile_summary}))
"""


def test_the_bundle_ships_the_control_plane_and_the_contracts_but_no_gpu_node_code() -> None:
    assert set(CODE_PACKAGES) == {"control_plane", "lambdas", "plinth"}


@pytest.mark.integration
def test_api_and_reconciler_handlers_run_from_the_bundle_alone(tmp_path, http_api_event) -> None:
    bundle = tmp_path / "bundle"
    archive = code_archive(str(REPO_ROOT), CODE_PACKAGES)
    for name, asset in archive.assets.items():
        shutil.copytree(asset.path, bundle / name, ignore=shutil.ignore_patterns("__pycache__"))
    blocked = ",".join(p for p in REPO_PACKAGES if p not in CODE_PACKAGES)
    env = {
        **os.environ,
        "PLINTH_STATE_DIR": str(tmp_path / "state"),
        # Local driver: importable without a cluster; it starts nothing with no deployments.
        "PLINTH_CLUSTER": "local",
        "PLINTH_RUN_BACKGROUND_WORKERS": "false",
    }
    for name in ("PLINTH_STORE", "PLINTH_BLOB", "PLINTH_QUEUE", "PLINTH_BOOTSTRAP_API_KEY"):
        env.pop(name, None)
    event = json.dumps(http_api_event("GET", "/healthz"))
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(bundle), blocked, event],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["api"]["statusCode"] == 200
    assert result["reconcile"]["decisions"] == 0
