"""The offline harness: mock answers for data sources, stack config loading."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from infra.exceptions import InfraConfigError
from infra.offline import MOCK_ACCOUNT_ID, load_stack_config, run_offline


def test_data_sources_get_plausible_answers() -> None:
    def program():
        identity = aws.get_caller_identity()
        zones = aws.get_availability_zones(state="available")
        return {"account": identity.account_id, "zones": zones.names}

    result = run_offline(program, project="p", stack="s", region="eu-west-1")
    assert result.outputs["account"] == MOCK_ACCOUNT_ID
    assert result.outputs["zones"][:3] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def test_resources_get_ids_and_arns_and_stack_references_answer() -> None:
    def program():
        queue = aws.sqs.Queue("jobs", name="jobs")
        ref = pulumi.StackReference("org/other/prod")
        return {"arn": queue.arn, "url": queue.url, "other": ref.require_output("apiUrl")}

    result = run_offline(
        program, project="p", stack="s", stack_outputs={"org/other/prod": {"apiUrl": "https://api"}}
    )
    assert result.outputs == {
        "arn": f"arn:aws:sqs:us-east-1:{MOCK_ACCOUNT_ID}:jobs",
        "url": f"https://sqs.us-east-1.amazonaws.com/{MOCK_ACCOUNT_ID}/jobs",
        "other": "https://api",
    }
    assert result.one("aws:sqs/queue:Queue", "jobs").id == "jobs-id"


def test_load_stack_config_merges_project_defaults_and_stack_values(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(
        "name: demo\nruntime: python\nconfig:\n"
        "  size:\n    type: integer\n    default: 3\n"
        "  zones:\n    type: array\n    default: [a]\n"
        "  label:\n    type: string\n"
    )
    (tmp_path / "Pulumi.dev.yaml").write_text(
        "config:\n  aws:region: eu-west-1\n  demo:zones: [a, b]\n  demo:groups:\n    - name: x\n"
    )
    project, config = load_stack_config(tmp_path, "dev")
    assert project == "demo"
    assert config == {
        "demo:size": "3",
        "demo:zones": '["a", "b"]',
        "demo:groups": json.dumps([{"name": "x"}]),
        "aws:region": "eu-west-1",
    }


def test_missing_stack_file_is_named(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: demo\nruntime: python\n")
    with pytest.raises(InfraConfigError, match=r"Pulumi\.prod\.yaml"):
        load_stack_config(tmp_path, "prod")
