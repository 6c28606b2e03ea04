"""Every ``stacks/*/Pulumi.<stack>.yaml`` through its program under mocks, plus config checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from control_plane.domain.clusters import Cluster
from infra import policies
from infra.exceptions import InfraConfigError
from infra.offline import load_stack_config, run_offline, run_stack
from infra.preflight import main as preflight_main
from infra.preflight import referenced_stacks, stack_files
from infra.programs import aws_control_plane, aws_region, gcp_region, hybrid, self_hosted
from infra.programs.cluster_registration import (
    ClusterRegistrationConfig,
    aws_capacity,
    cloud_cluster_record,
)

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"

CONFIG_MODELS = {
    "aws-region": aws_region.AwsRegionConfig,
    "gcp-region": gcp_region.GcpRegionConfig,
    "aws-control-plane": aws_control_plane.AwsControlPlaneConfig,
    "self-hosted": self_hosted.SelfHostedConfig,
    "hybrid": hybrid.HybridConfig,
}
# Fields filled from provider config (aws:region, gcp:project, gcp:region), not the project's.
PROVIDER_FIELDS = {"region", "project"}

# A program that raises leaves Pulumi output coroutines unawaited; that is expected here.
UNAWAITED = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")


def test_every_stack_has_a_program_and_real_region_files() -> None:
    assert {d.name for d in STACKS_DIR.iterdir() if d.is_dir()} == set(CONFIG_MODELS)
    stacks = set(stack_files(STACKS_DIR))
    for expected in [
        ("aws-region", "prod-us-east-1"),
        ("aws-region", "prod-us-west-2"),
        ("gcp-region", "prod-europe-west4"),
        ("gcp-region", "prod-us-central1"),
        ("aws-control-plane", "prod-us-east-1"),
    ]:
        assert expected in stacks


@pytest.mark.parametrize(("stack_dir", "stack"), stack_files(STACKS_DIR))
def test_stack_runs_under_mocks_and_passes_every_policy(stack_dir, stack, tree) -> None:
    result = tree.run(stack_dir, stack)
    assert len(result.resources) >= 5
    assert result.outputs and all(v not in (None, "") for v in result.outputs.values()), (
        result.outputs
    )
    assert policies.check(result.resources) == []
    stack_tags = [
        r.inputs[field]["stack"]
        for r in result.resources
        for field in ("tags", "labels", "resourceLabels")
        if isinstance(r.inputs.get(field), dict) and "stack" in r.inputs[field]
    ]
    assert stack_tags and set(stack_tags) == {stack}


@pytest.mark.parametrize("stack_dir", sorted(CONFIG_MODELS))
def test_pulumi_yaml_config_block_matches_the_config_model(stack_dir) -> None:
    """Pulumi requires every declared key without a default, so the project file declares
    the required keys (no default) and the ones with a plain default (the same as the
    model's); optional keys without a default stay undeclared but documented."""
    project = yaml.safe_load((STACKS_DIR / stack_dir / "Pulumi.yaml").read_text())
    assert project["name"] == stack_dir
    assert project["runtime"]["name"] == "python"
    model = CONFIG_MODELS[stack_dir]
    fields = {f.alias: f for name, f in model.model_fields.items() if name not in PROVIDER_FIELDS}
    declared = project["config"]
    assert set(declared) <= set(fields)
    for key, field in fields.items():
        if field.is_required():
            assert key in declared and "default" not in declared[key], key
        elif key in declared:
            assert declared[key]["default"] == field.get_default(call_default_factory=True), key
    doc = (STACKS_DIR.parent / "docs" / "stacks" / f"{stack_dir}.md").read_text()
    for key in fields:
        assert f"`{key}`" in doc, f"{key} is not documented in docs/stacks/{stack_dir}.md"


def _declared_or_field(stack_dir: str) -> set[str]:
    model = CONFIG_MODELS[stack_dir]
    return {
        f.alias or name for name, f in model.model_fields.items() if name not in PROVIDER_FIELDS
    }


@pytest.mark.parametrize(("stack_dir", "stack"), stack_files(STACKS_DIR))
def test_stack_files_only_set_declared_keys(stack_dir, stack) -> None:
    declared = _declared_or_field(stack_dir)
    config = yaml.safe_load((STACKS_DIR / stack_dir / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key in config:
        namespace, _, name = key.partition(":")
        if namespace == stack_dir:
            assert name in declared, f"{key} is not a config key of the {stack_dir} program"
        else:
            assert namespace in ("aws", "gcp"), key


@pytest.mark.parametrize("stack_dir", sorted(CONFIG_MODELS))
def test_main_is_thin(stack_dir) -> None:
    source = (STACKS_DIR / stack_dir / "__main__.py").read_text()
    module = stack_dir.replace("-", "_")
    assert f"from infra.programs.{module} import main" in source
    assert len([line for line in source.splitlines() if line.strip()]) <= 10


def test_aws_region_us_east_1_gpu_groups(tree) -> None:
    result = tree.run("aws-region", "prod-us-east-1")
    groups = {g.name: g.inputs for g in result.of_type("aws:eks/nodeGroup:NodeGroup")}
    assert groups["plinth-use1-gpu-h100"]["instanceTypes"] == ["p5.48xlarge"]
    assert groups["plinth-use1-gpu-h200-cb"]["capacityType"] == "CAPACITY_BLOCK"
    assert groups["plinth-use1-gpu-l4"]["amiType"] == "AL2023_x86_64_NVIDIA"
    gateway = result.one("kubernetes:apps/v1:Deployment", "plinth-use1-gateway").inputs
    env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[0]["value"] == tree.outputs_of("plinth/aws-control-plane/prod-us-east-1")["apiUrl"]
    assert len(result.of_type("aws:ec2/natGateway:NatGateway")) == 3


def test_self_hosted_uses_the_existing_vpc() -> None:
    result = run_stack(STACKS_DIR / "self-hosted", "acme-us-east-2")
    assert result.of_type("aws:ec2/vpc:Vpc") == []
    cluster = result.one("aws:eks/cluster:Cluster", "acme-plinth-cluster").inputs
    assert cluster["vpcConfig"]["subnetIds"] == [
        "subnet-0aaa1111bbbb2222c",
        "subnet-0ddd3333eeee4444f",
    ]


def _registered(result) -> dict[str, dict]:
    """The cluster records a run writes, by id (the value inside each DynamoDB item)."""
    records = {}
    for item in result.of_type("aws:dynamodb/tableItem:TableItem"):
        stored = json.loads(item.inputs["item"])
        records[stored["key"]["S"]] = json.loads(stored["value"]["S"])
        assert stored["tbl"]["S"] == "clusters" and stored["version"]["N"] == "1"
    return records


def test_hybrid_registers_the_customer_cluster_without_the_external_id(tree) -> None:
    assert referenced_stacks(STACKS_DIR, "hybrid", "prod-us-east-1") == [
        "plinth/aws-control-plane/prod-us-east-1",
        "plinth/aws-region/prod-us-east-1",
    ]
    result = tree.run("hybrid", "prod-us-east-1")
    control_plane = tree.outputs_of("plinth/aws-control-plane/prod-us-east-1")
    region = tree.outputs_of("plinth/aws-region/prod-us-east-1")
    items = result.of_type("aws:dynamodb/tableItem:TableItem")
    assert [i.name for i in items] == ["cluster-acme-use2"]
    assert items[0].inputs["tableName"] == control_plane["metadataTableName"]
    record = _registered(result)["acme-use2"]
    assert Cluster.from_dict(record).to_dict() == record
    assert record["kind"] == "self-hosted" and record["spill_over_to"] == region["clusterId"]
    assert record["driver"]["kind"] == "kubernetes-assumed-role"
    assert record["driver"]["endpoint"].startswith("https://")
    assert record["capacity"] == {"H100": 16, "L4": 8} and record["max_gpus"] == 16
    assert "acme-7f3c9d2e4b1a8f60" not in json.dumps([i.inputs for i in items])
    (assume,) = result.of_type("aws:iam/rolePolicy:RolePolicy")
    assert assume.inputs["role"] == control_plane["reconcilerRoleArn"].rsplit("/", 1)[-1]


@pytest.mark.parametrize(
    ("stack_dir", "stack", "cluster_id", "cloud"),
    [
        ("aws-region", "prod-us-east-1", "plinth-use1", "aws"),
        ("aws-region", "prod-us-west-2", "plinth-usw2", "aws"),
        ("gcp-region", "prod-europe-west4", "plinth-euw4", "gcp"),
        ("gcp-region", "prod-us-central1", "plinth-usc1", "gcp"),
    ],
)
def test_region_stacks_register_their_cluster(tree, stack_dir, stack, cluster_id, cloud) -> None:
    result = tree.run(stack_dir, stack)
    control_plane = tree.outputs_of("plinth/aws-control-plane/prod-us-east-1")
    (item,) = result.of_type("aws:dynamodb/tableItem:TableItem")
    assert item.inputs["tableName"] == control_plane["metadataTableName"]
    record = _registered(result)[cluster_id]
    assert result.outputs["clusterId"] == cluster_id
    cluster = Cluster.from_dict(record)
    assert cluster.to_dict() == record and cluster.cloud == cloud
    assert cluster.driver.endpoint.startswith("https://") and cluster.driver.namespace
    assert cluster.capacity and all(gpus > 0 for gpus in cluster.capacity.values())
    if cloud == "gcp":  # the table lives in the control plane's AWS account and region
        assert item.provider is not None and "control-plane" in item.provider
        (provider,) = result.of_type("pulumi:providers:aws")
        assert provider.inputs["region"] == "us-east-1"


def test_registration_config_overrides_and_unknown_regions() -> None:
    record = cloud_cluster_record(
        cloud="aws",
        region="eu-west-1",
        cluster_id="eu-a",
        capacity={"H100": 8},
        registration=ClusterRegistrationConfig.from_mapping(
            {"priority": 5, "gpuHourCost": 3.5, "labels": {"residency": "eu"}}
        ),
        where="aws-region",
    )("https://k8s.example", "plinth")
    cluster = Cluster.from_dict(record)
    assert (cluster.priority, cluster.gpu_hour_cost, cluster.residency) == (5, 3.5, "eu")
    with pytest.raises(InfraConfigError, match=r"clusterRegistration\.location"):
        cloud_cluster_record(
            cloud="acme",
            region="moon-base-1",
            cluster_id="x",
            capacity={},
            registration=ClusterRegistrationConfig(),
            where="aws-region",
        )
    with pytest.raises(InfraConfigError, match=r"gpuNodeGroups\[0\].instanceType"):
        aws_capacity([("p9.huge", 1)], "aws-region:gpuNodeGroups")


@UNAWAITED
def test_missing_stack_reference_output_fails_the_run() -> None:
    with pytest.raises(
        Exception, match=r"apiUrl|metadataTableName|internalTokenSecretArn|blobBucket"
    ):
        run_stack(STACKS_DIR / "aws-region", "prod-us-west-2", stack_outputs={})


@UNAWAITED
@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        (
            "aws-region:gpuNodeGroups",
            json.dumps([{"name": "x", "instanceType": "p9.huge", "maxSize": 1}]),
            "instance_type",
        ),
        (
            "aws-region:gpuNodeGroups",
            json.dumps([{"name": "x", "instanceType": "p5.48xlarge"}]),
            "maxSize",
        ),
        ("aws-region:azCount", "three", "azCount"),
        ("aws-region:gpuNodeGroups", "[not json", "invalid JSON"),
    ],
)
def test_bad_stack_config_names_the_key(key, value, needle) -> None:
    project, config = load_stack_config(STACKS_DIR / "aws-region", "prod-us-east-1")
    config[key] = value
    with pytest.raises(InfraConfigError, match=needle):
        run_offline(
            lambda: aws_region.program(STACKS_DIR / "aws-region"),
            project=project,
            stack="bad",
            config=config,
            stack_outputs={"plinth/aws-control-plane/prod-us-east-1": {"apiUrl": "https://x"}},
        )


@UNAWAITED
def test_missing_provider_region_is_reported() -> None:
    project, config = load_stack_config(STACKS_DIR / "aws-control-plane", "prod-us-east-1")
    del config["aws:region"]
    with pytest.raises(InfraConfigError, match="aws:region"):
        run_offline(
            lambda: aws_control_plane.program(Path(STACKS_DIR / "aws-control-plane")),
            project=project,
            stack="x",
            config=config,
        )


def test_preflight_cli_reports_every_stack_ok(capsys) -> None:
    assert preflight_main([str(STACKS_DIR)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(stack_files(STACKS_DIR))
    assert all(line.endswith(": ok") for line in lines)
