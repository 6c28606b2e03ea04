"""Model image registries under mocks: immutable tags, scan on push, bounded by lifecycle."""

from __future__ import annotations

import json

import pytest

from infra.exceptions import InfraConfigError
from infra.registries import ArtifactModelRegistry, EcrModelRegistry, ModelRegistryArgs


def test_ecr_repository_is_immutable_scanned_encrypted_and_bounded(run, tags) -> None:
    def program() -> None:
        EcrModelRegistry("models", ModelRegistryArgs(tags=tags, keep_images=50))

    result = run(program)
    repo = result.one("aws:ecr/repository:Repository", "models").inputs
    assert repo["name"] == "plinth-models"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    policy = json.loads(
        result.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "models").inputs["policy"]
    )
    selections = [rule["selection"] for rule in policy["rules"]]
    assert selections[0]["tagStatus"] == "untagged" and selections[0]["countNumber"] == 7
    assert selections[1] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 50,
    }


def test_artifact_registry_is_docker_immutable_and_cleaned(run, tags) -> None:
    def program() -> None:
        ArtifactModelRegistry("models", ModelRegistryArgs(tags=tags))

    result = run(program)
    repo = result.one("gcp:artifactregistry/repository:Repository", "models").inputs
    assert repo["format"] == "DOCKER" and repo["location"] == "us-east-1"
    assert repo["dockerConfig"] == {"immutableTags": True}
    policies = {p["id"]: p for p in repo["cleanupPolicies"]}
    assert policies["untagged"]["condition"] == {"tagState": "UNTAGGED", "olderThan": "604800s"}
    assert policies["keep-newest"]["mostRecentVersions"] == {"keepCount": 1000}
    assert repo["cleanupPolicyDryRun"] is False


@pytest.mark.parametrize("field", ["keep_images", "untagged_days"])
def test_bad_registry_args_name_the_field(tags, field) -> None:
    with pytest.raises(InfraConfigError, match=field):
        ModelRegistryArgs(tags=tags, **{field: 0})


@pytest.mark.parametrize(
    ("stack", "stack_name", "url_start"),
    [
        ("aws-region", "prod-us-east-1", "123456789012.dkr.ecr.us-east-1.amazonaws.com/"),
        ("gcp-region", "prod-us-central1", "us-central1-docker.pkg.dev/"),
    ],
)
def test_region_stacks_export_their_model_registry(stack, stack_name, url_start) -> None:
    from pathlib import Path

    from infra.preflight import StackTree

    tree = StackTree(Path(__file__).resolve().parents[2] / "stacks")
    url = tree.run(stack, stack_name).outputs["modelRegistryUrl"]
    assert url.startswith(url_start) and url.endswith("/plinth-models")
