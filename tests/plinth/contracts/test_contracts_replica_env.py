"""The replica environment: what the control plane writes is what a replica reads back."""

from __future__ import annotations

import pytest

from plinth.contracts.exceptions import ReplicaEnvError
from plinth.contracts.replica_env import ReplicaEnv, ReplicaVar, WeightsDelivery

MANIFESTS = ("a" * 64, "b" * 64)


def full_env() -> ReplicaEnv:
    return ReplicaEnv(
        model_id="m1",
        deployment_id="d1",
        environment="production",
        secrets_dir="/secrets",
        log_level="DEBUG",
        weights=WeightsDelivery(
            manifests=MANIFESTS,
            origin_url="http://127.0.0.1:8800/weights",
            cache_dir="/cache",
            mount_root="weights",
            cluster_url="http://cache:8790",
            cache_budget_bytes=1 << 30,
            status_dir="/status",
        ),
    )


def test_every_field_survives_the_round_trip_through_the_environment() -> None:
    written = full_env().to_env()
    assert ReplicaEnv.from_env(written) == full_env()


def test_the_wire_names_are_the_documented_ones() -> None:
    assert full_env().to_env() == {
        "PLINTH_MODEL_ID": "m1",
        "PLINTH_DEPLOYMENT_ID": "d1",
        "PLINTH_ENVIRONMENT": "production",
        "PLINTH_SECRETS_DIR": "/secrets",
        "PLINTH_LOG_LEVEL": "DEBUG",
        "PLINTH_WEIGHTS_MANIFESTS": ",".join(MANIFESTS),
        "PLINTH_WEIGHTS_ORIGIN_URL": "http://127.0.0.1:8800/weights",
        "PLINTH_WEIGHTS_CACHE_DIR": "/cache",
        "PLINTH_WEIGHTS_MOUNT_ROOT": "weights",
        "PLINTH_WEIGHTS_CLUSTER_URL": "http://cache:8790",
        "PLINTH_WEIGHTS_CACHE_BUDGET_BYTES": str(1 << 30),
        "PLINTH_WEIGHTS_STATUS_DIR": "/status",
    }
    assert {str(var) for var in ReplicaVar} == set(full_env().to_env())


def test_unset_fields_write_nothing_and_a_replica_without_manifests_gets_no_weights_variables() -> (
    None
):
    delivery = WeightsDelivery(origin_url="http://o/weights", cache_dir="/c", mount_root="/")
    assert ReplicaEnv(model_id="m1", weights=delivery).to_env() == {"PLINTH_MODEL_ID": "m1"}
    assert ReplicaEnv().to_env() == {}
    assert ReplicaEnv.from_env({}) == ReplicaEnv()


def test_for_manifests_adds_a_deployments_ids_to_the_shared_delivery() -> None:
    delivery = WeightsDelivery(origin_url="http://o/weights")
    assert delivery.for_manifests(["x", "y"]).manifests == ("x", "y")
    assert delivery.for_manifests(["x"]).origin_url == "http://o/weights"


def test_reading_ignores_blank_ids_and_other_variables() -> None:
    read = ReplicaEnv.from_env({"PLINTH_WEIGHTS_MANIFESTS": " a, ,b ", "PATH": "/bin"})
    assert read.weights.manifests == ("a", "b")


def test_a_bad_budget_names_the_variable_and_the_value() -> None:
    with pytest.raises(ReplicaEnvError, match=r"PLINTH_WEIGHTS_CACHE_BUDGET_BYTES .*'lots'"):
        ReplicaEnv.from_env({"PLINTH_WEIGHTS_CACHE_BUDGET_BYTES": "lots"})
