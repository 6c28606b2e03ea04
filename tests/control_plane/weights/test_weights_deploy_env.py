"""The replica environment the control plane writes: ids, environment and mirrored weights."""

from __future__ import annotations

from pathlib import Path

from control_plane.domain.package import replica_spec_for
from control_plane.domain.records import DeploymentRecord, DeploymentStatus
from control_plane.settings import Settings
from control_plane.weights.delivery import weights_delivery_for
from gpu_nodes.weights.hooks import WeightsSettings
from plinth.contracts.replica_env import ReplicaEnv


def test_local_delivery_reaches_the_control_plane_and_shares_one_node_cache(
    tmp_path: Path,
) -> None:
    delivery = weights_delivery_for(Settings(state_dir=tmp_path, host="0.0.0.0", port=9123))
    env = ReplicaEnv(weights=delivery.for_manifests(["a" * 64, "b" * 64])).to_env()
    assert env == {
        "PLINTH_WEIGHTS_MANIFESTS": f"{'a' * 64},{'b' * 64}",
        "PLINTH_WEIGHTS_ORIGIN_URL": "http://127.0.0.1:9123/weights",
        "PLINTH_WEIGHTS_CACHE_DIR": str((tmp_path / "weights-cache").resolve()),
        "PLINTH_WEIGHTS_MOUNT_ROOT": "weights",
    }
    # What the model server reads back.
    settings = WeightsSettings.from_env(env)
    assert settings.manifests == ("a" * 64, "b" * 64)
    assert settings.origin_url == "http://127.0.0.1:9123/weights"


def test_kubernetes_mounts_at_truss_paths_and_origin_can_be_overridden(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, cluster_kind="kubernetes")
    delivery = weights_delivery_for(settings, origin_url="http://plinth-cp.plinth:8800/weights")
    assert delivery.mount_root == "/"
    assert delivery.origin_url == "http://plinth-cp.plinth:8800/weights"


def test_no_weights_means_no_variables(tmp_path: Path) -> None:
    delivery = weights_delivery_for(Settings(state_dir=tmp_path))
    assert ReplicaEnv(weights=delivery.for_manifests([])).to_env() == {}
    assert ReplicaEnv(weights=delivery).to_env() == {}


def test_origin_url_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    url = "http://plinth-control-plane.plinth.svc:8800/weights"
    settings = Settings.from_env(
        {"PLINTH_STATE_DIR": str(tmp_path), "PLINTH_WEIGHTS_ORIGIN_URL": url}
    )
    assert settings.weights_origin_url == url
    assert Settings.from_env({"PLINTH_STATE_DIR": str(tmp_path)}).weights_origin_url is None


def _deployment(weights_manifests: list[str]) -> DeploymentRecord:
    return DeploymentRecord(
        id="d1",
        model_id="m1",
        name="d1",
        status=DeploymentStatus.DEPLOYING,
        created_at=0.0,
        status_changed_at=0.0,
        archive_sha256="0" * 64,
        config={
            "model_name": "m",
            "environment_variables": {"GREETING": "hi", "PLINTH_MODEL_ID": "from-config"},
        },
        target_environment="production",
        weights_manifests=weights_manifests,
    )


def test_the_replica_spec_env_reads_back_as_the_deployment_it_was_written_for(
    tmp_path: Path,
) -> None:
    delivery = weights_delivery_for(Settings(state_dir=tmp_path, port=9123))
    spec = replica_spec_for(_deployment(["a" * 64]), lambda names: {}, weights=delivery)
    assert spec.env["GREETING"] == "hi"  # the package's own variables are kept
    assert ReplicaEnv.from_env(spec.env) == ReplicaEnv(
        model_id="m1",  # the platform's variables win over the config's
        deployment_id="d1",
        environment="production",
        weights=delivery.for_manifests(["a" * 64]),
    )


def test_a_replica_without_manifests_or_delivery_gets_no_weights_variables(tmp_path: Path) -> None:
    delivery = weights_delivery_for(Settings(state_dir=tmp_path))
    without_manifests = replica_spec_for(_deployment([]), lambda names: {}, weights=delivery)
    without_delivery = replica_spec_for(_deployment(["a" * 64]), lambda names: {})
    for spec in (without_manifests, without_delivery):
        assert not [name for name in spec.env if name.startswith("PLINTH_WEIGHTS_")]
