"""Run a Pulumi program offline: Pulumi's mock monitor instead of the engine and the clouds.

``run_offline`` executes a program (any callable creating resources) under
``pulumi.runtime.set_mocks(..., preview=False)`` with a :class:`RecordingMocks` that
answers every resource with plausible outputs (ids, ARNs, endpoints) and every data source
the components call (availability zones, caller identity, ...). It returns what the engine
would have been asked to create, so ``infra.policies`` can check it and tests can assert on
it. ``load_stack_config`` reads a stack directory's ``Pulumi.yaml`` defaults and
``Pulumi.<stack>.yaml`` values the way the Pulumi CLI hands them to a program.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs

from infra.exceptions import InfraConfigError

MOCK_ACCOUNT_ID = "123456789012"
MOCK_GCP_PROJECT = "plinth-prod"


@dataclass(frozen=True)
class RecordedResource:
    """One resource as the engine would have received it (input names are Pulumi's camelCase)."""

    type: str
    name: str
    inputs: dict[str, Any]
    id: str
    outputs: dict[str, Any]
    provider: str | None = None  # "<provider urn>::<id>" when an explicit provider was passed


@dataclass
class OfflineRun:
    resources: list[RecordedResource]
    outputs: dict[str, Any]  # the program's returned outputs, resolved
    urns: list[str] = field(default_factory=list)  # every registered URN (parents show as Type$)

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: str) -> RecordedResource:
        found = [r for r in self.resources if r.type == type_token and r.name == name]
        if len(found) != 1:
            names = sorted(r.name for r in self.of_type(type_token))
            raise KeyError(f"{type_token} {name!r}: found {len(found)}; have {names}")
        return found[0]


def _arn_service(type_token: str) -> str:
    # "aws:eks/cluster:Cluster" -> "eks"
    return type_token.split(":")[1].split("/")[0]


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record every resource and answer with realistic-looking outputs."""

    region: str = "us-east-1"
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorded: list[RecordedResource] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id = f"{args.name}-id"
        outputs = {**args.inputs, **self._extra_outputs(args, resource_id)}
        with self._lock:
            self.recorded.append(
                RecordedResource(
                    args.typ,
                    args.name,
                    dict(args.inputs),
                    resource_id,
                    outputs,
                    args.provider or None,
                )
            )
        return resource_id, outputs

    def _extra_outputs(self, args: MockResourceArgs, resource_id: str) -> dict[str, Any]:
        typ, name, inputs = args.typ, args.name, args.inputs
        if typ == "pulumi:pulumi:StackReference":
            return {"outputs": self.stack_outputs.get(inputs.get("name", name), {})}
        if typ.startswith("aws:"):
            return self._aws_outputs(typ, name, inputs)
        if typ.startswith("gcp:"):
            return self._gcp_outputs(typ, name, inputs)
        if typ.startswith("kubernetes:"):
            return {"metadata": {**inputs.get("metadata", {}), "name": name}}
        return {}

    def _aws_outputs(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        physical = inputs.get("name") or inputs.get("bucket") or name
        service = _arn_service(typ)
        region = "" if service in ("iam", "s3") else self.region
        kind = typ.rsplit(":", 1)[-1].lower()
        out: dict[str, Any] = {
            "arn": f"arn:aws:{service}:{region}:{MOCK_ACCOUNT_ID}:{kind}/{physical}",
            "name": physical,
        }
        if typ == "aws:s3/bucket:Bucket":
            out.update(arn=f"arn:aws:s3:::{physical}", bucket=physical)
        elif typ == "aws:eks/cluster:Cluster":
            out.update(
                endpoint=f"https://{physical}.gr7.{self.region}.eks.amazonaws.com",
                certificateAuthority={"data": "bW9jay1jYQ=="},
                identities=[
                    {"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/MOCK"}]}
                ],
                vpcConfig={**inputs.get("vpcConfig", {}), "clusterSecurityGroupId": "sg-cluster"},
            )
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            group = inputs.get("nodeGroupName", name)
            out["resources"] = [{"autoscalingGroups": [{"name": f"eks-{group}-mock"}]}]
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            out["latestVersion"] = 1
        elif typ == "aws:sqs/queue:Queue":
            out["url"] = f"https://sqs.{self.region}.amazonaws.com/{MOCK_ACCOUNT_ID}/{physical}"
            out["arn"] = f"arn:aws:sqs:{self.region}:{MOCK_ACCOUNT_ID}:{physical}"
        elif typ == "aws:ecr/repository:Repository":
            registry = f"{MOCK_ACCOUNT_ID}.dkr.ecr.{self.region}.amazonaws.com"
            out.update(registryId=MOCK_ACCOUNT_ID, repositoryUrl=f"{registry}/{physical}")
        elif typ == "aws:lambda/function:Function":
            out["invokeArn"] = f"arn:aws:apigateway:{self.region}:lambda:path/functions/{physical}"
        elif typ == "aws:apigatewayv2/api:Api":
            out["apiEndpoint"] = f"https://{name}.execute-api.{self.region}.amazonaws.com"
            out["executionArn"] = f"arn:aws:execute-api:{self.region}:{MOCK_ACCOUNT_ID}:{name}"
        return out

    def _gcp_outputs(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        physical = inputs.get("name") or name
        out: dict[str, Any] = {
            "name": physical,
            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{MOCK_GCP_PROJECT}/{physical}",
        }
        if typ == "gcp:container/cluster:Cluster":
            out.update(endpoint="10.0.0.2", masterAuth={"clusterCaCertificate": "bW9jaw=="})
        elif typ == "gcp:storage/bucket:Bucket":
            out["url"] = f"gs://{physical}"
        elif typ == "gcp:artifactregistry/repository:Repository":
            out["project"] = inputs.get("project") or MOCK_GCP_PROJECT
        elif typ == "gcp:serviceaccount/account:Account":
            out["email"] = (
                f"{inputs.get('accountId', name)}@{MOCK_GCP_PROJECT}.iam.gserviceaccount.com"
            )
        return out

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            letters = "abcdef"
            return {
                "names": [f"{self.region}{c}" for c in letters],
                "zoneIds": [f"az{i}" for i in range(len(letters))],
            }, []
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": MOCK_ACCOUNT_ID,
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/pulumi",
                "userId": "AIDAMOCK",
            }, []
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com"}, []
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region}, []
        if token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            secret_id = str(args.args.get("secretId", ""))
            return {"arn": secret_id, "secretString": "int_mock-internal-token"}, []
        if token == "gcp:organizations/getProject:getProject":
            return {"projectId": MOCK_GCP_PROJECT, "number": "1234567890"}, []
        return {}, []


def run_offline(
    program: Callable[[], Mapping[str, Any] | None],
    *,
    project: str,
    stack: str,
    config: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    stack_outputs: dict[str, dict[str, Any]] | None = None,
) -> OfflineRun:
    """Run ``program`` under mocks and return every resource it registered and its outputs."""
    pulumi.runtime.set_all_config(dict(config or {}))
    mocks = RecordingMocks(region=region, stack_outputs=dict(stack_outputs or {}))
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    resolved: dict[str, Any] = {}

    def _resolve_outputs(values: dict[str, Any]) -> None:
        resolved.update(values)

    @pulumi.runtime.test
    def _run() -> pulumi.Output[None]:
        outputs = program() or {}
        return pulumi.Output.from_input(dict(outputs)).apply(_resolve_outputs)

    _run()
    with mocks._lock:
        recorded = list(mocks.recorded)
    return OfflineRun(resources=recorded, outputs=resolved, urns=sorted(monitor.resources))


def _config_string(value: Any) -> str:
    # The Pulumi CLI hands every config value to the program as a string; structured
    # values travel as JSON (read back with Config.get_object).
    if isinstance(value, str):
        return value
    return json.dumps(value)


def load_stack_config(stack_dir: Path, stack: str) -> tuple[str, dict[str, str]]:
    """(project name, config) for ``stack`` as ``pulumi up`` in ``stack_dir`` would see it."""
    project_file = stack_dir / "Pulumi.yaml"
    stack_file = stack_dir / f"Pulumi.{stack}.yaml"
    for path in (project_file, stack_file):
        if not path.is_file():
            raise InfraConfigError(str(path), "file not found")
    project_doc = yaml.safe_load(project_file.read_text()) or {}
    stack_doc = yaml.safe_load(stack_file.read_text()) or {}
    project = str(project_doc.get("name", ""))
    if not project:
        raise InfraConfigError(f"{project_file}: name", "project name missing")
    config: dict[str, str] = {}
    for key, decl in (project_doc.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            full_key = key if ":" in key else f"{project}:{key}"
            config[full_key] = _config_string(decl["default"])
    for key, value in (stack_doc.get("config") or {}).items():
        full_key = key if ":" in key else f"{project}:{key}"
        config[full_key] = _config_string(value)
    return project, config


def run_stack(
    stack_dir: Path, stack: str, *, stack_outputs: dict[str, dict[str, Any]] | None = None
) -> OfflineRun:
    """Run ``stacks/<name>``'s program for ``Pulumi.<stack>.yaml`` under mocks.

    The program is ``infra.programs.<name with _>.program`` -- what the stack's
    ``__main__.py`` calls -- so config travels the same path as under ``pulumi up``.
    """
    import importlib

    project, config = load_stack_config(stack_dir, stack)
    module = importlib.import_module(f"infra.programs.{stack_dir.name.replace('-', '_')}")
    region = config.get("aws:region") or config.get("gcp:region") or "us-east-1"
    return run_offline(
        lambda: module.program(stack_dir),
        project=project,
        stack=stack,
        config=config,
        region=region,
        stack_outputs=stack_outputs,
    )
