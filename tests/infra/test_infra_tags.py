"""Standard tags and labels."""

from __future__ import annotations

import pytest

from infra.exceptions import InfraConfigError
from infra.tags import REQUIRED_TAG_KEYS, StandardTags, gcp_label_value


def test_aws_tags_have_every_required_key_and_extra_cannot_override() -> None:
    tags = StandardTags(
        "plinth", "prod-us-east-1", "us-east-1", extra={"team": "ml", "project": "x"}
    )
    aws = tags.aws("eks")
    assert set(REQUIRED_TAG_KEYS) <= set(aws)
    assert aws["project"] == "plinth" and aws["team"] == "ml" and aws["managed-by"] == "pulumi"


def test_gcp_labels_are_normalised() -> None:
    labels = StandardTags("Plinth", "Prod.EU", "europe-west4").gcp("GKE")
    assert (
        labels["project"] == "plinth"
        and labels["stack"] == "prod-eu"
        and labels["component"] == "gke"
    )
    assert gcp_label_value("x" * 100) == "x" * 63


def test_empty_field_is_rejected() -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        StandardTags("plinth", "", "us-east-1")
    assert excinfo.value.field == "tags.stack"
