"""Settings.from_env: defaults, typed values, errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.exceptions import SettingsError
from control_plane.settings import Settings


def test_defaults_are_the_embedded_ones() -> None:
    settings = Settings.from_env({})
    assert (settings.store_kind, settings.blob_kind, settings.queue_kind) == (
        "sqlite",
        "directory",
        "sqlite",
    )
    assert settings.cluster_kind == "local" and settings.state_dir == Path(".plinth")
    assert settings.run_background_workers and settings.internal_token is None
    assert settings.promotion_drain_s == 10.0


def test_values_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "PLINTH_STATE_DIR": "/tmp/x",
            "PLINTH_PORT": "9000",
            "PLINTH_RECONCILE_INTERVAL_S": "0.5",
            "PLINTH_RUN_BACKGROUND_WORKERS": "false",
            "PLINTH_INTERNAL_TOKEN": "tok",
            "PLINTH_BOOTSTRAP_API_KEY": "pl_x",
            "PLINTH_BLOB": "s3",
            "PLINTH_BLOB_BUCKET": "b",
            "PLINTH_PROMOTION_DRAIN_S": "2.5",
        }
    )
    assert settings.state_dir == Path("/tmp/x") and settings.port == 9000
    assert settings.reconcile_interval_s == 0.5 and not settings.run_background_workers
    assert (settings.internal_token, settings.bootstrap_api_key) == ("tok", "pl_x")
    assert (settings.blob_kind, settings.blob_bucket) == ("s3", "b")
    assert settings.promotion_drain_s == 2.5
    assert Settings.from_env({"PLINTH_PROMOTION_DRAIN_S": "0"}).promotion_drain_s == 0.0
    assert Settings.from_env({"PLINTH_DRAIN_TIMEOUT_S": "12"}).drain_timeout_s == 12.0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PLINTH_PORT": "eighty"}, "PLINTH_PORT"),
        ({"PLINTH_STORE": "postgres"}, "PLINTH_STORE"),
        ({"PLINTH_RUN_BACKGROUND_WORKERS": "maybe"}, "PLINTH_RUN_BACKGROUND_WORKERS"),
        ({"PLINTH_RECONCILE_INTERVAL_S": "0"}, "PLINTH_RECONCILE_INTERVAL_S"),
        ({"PLINTH_PROMOTION_DRAIN_S": "-1"}, "PLINTH_PROMOTION_DRAIN_S"),
        ({"PLINTH_PROMOTION_DRAIN_S": "nan"}, "PLINTH_PROMOTION_DRAIN_S"),
        ({"PLINTH_PROMOTION_DRAIN_S": "soon"}, "PLINTH_PROMOTION_DRAIN_S"),
        ({"PLINTH_DRAIN_TIMEOUT_S": "-1"}, "PLINTH_DRAIN_TIMEOUT_S"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_secrets_kek_and_named_cluster_are_read() -> None:
    settings = Settings.from_env(
        {
            "PLINTH_SECRETS_KEK": "aws-kms",
            "PLINTH_SECRETS_KMS_KEY_ID": "alias/plinth-secrets",
            "PLINTH_K8S_ENDPOINT": "https://ABC.gr7.us-east-1.eks.amazonaws.com",
            "PLINTH_K8S_CA_DATA": "LS0tLS1CRUdJTi0t",
            "PLINTH_K8S_AUTH": "eks",
            "PLINTH_K8S_CLUSTER_NAME": "plinth-use1",
        }
    )
    assert (settings.secrets_kek, settings.secrets_kms_key_id) == (
        "aws-kms",
        "alias/plinth-secrets",
    )
    assert (settings.k8s_auth, settings.k8s_cluster_name) == ("eks", "plinth-use1")
    assert settings.k8s_endpoint == "https://ABC.gr7.us-east-1.eks.amazonaws.com"
    assert Settings.from_env({}).secrets_kek == "local"
    assert Settings.from_env({}).k8s_auth == "none"
    with pytest.raises(SettingsError, match="PLINTH_SECRETS_KEK='kms'"):
        Settings.from_env({"PLINTH_SECRETS_KEK": "kms"})


def test_tokens_and_keys_stay_out_of_the_repr() -> None:
    settings = Settings.from_env(
        {"PLINTH_INTERNAL_TOKEN": "int_sekrit", "PLINTH_BOOTSTRAP_API_KEY": "pl_sekrit"}
    )
    assert settings.internal_token == "int_sekrit"
    assert "sekrit" not in repr(settings)


def test_multi_cluster_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "PLINTH_CLUSTER": "clusters",
            "PLINTH_PLACEMENT_HEARTBEAT_TIMEOUT_S": "5",
            "PLINTH_PLACEMENT_RECOVERY_HOLD_S": "0",
            "PLINTH_CLUSTER_CALL_TIMEOUT_S": "2.5",
        }
    )
    assert settings.cluster_kind == "clusters"
    assert settings.placement_heartbeat_timeout_s == 5.0
    assert settings.placement_recovery_hold_s == 0.0
    assert settings.cluster_call_timeout_s == 2.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PLINTH_PLACEMENT_HEARTBEAT_TIMEOUT_S", "0"),
        ("PLINTH_CLUSTER_CALL_TIMEOUT_S", "-1"),
        ("PLINTH_PLACEMENT_RECOVERY_HOLD_S", "-1"),
    ],
)
def test_bad_multi_cluster_timings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_container_runtime_needs_a_registry_and_reads_its_settings(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PLINTH_REGISTRY"):
        Settings(runtime="container")
    with pytest.raises(SettingsError, match="PLINTH_RUNTIME"):
        Settings(runtime="docker")
    settings = Settings.from_env(
        {
            "PLINTH_RUNTIME": "container",
            "PLINTH_REGISTRY": "127.0.0.1:8802",
            "PLINTH_IMAGE_CACHE_DIR": str(tmp_path),
        }
    )
    assert (settings.runtime, settings.registry) == ("container", "127.0.0.1:8802")
    assert settings.image_cache_dir == tmp_path
    assert Settings.from_env({}).runtime == "process"
