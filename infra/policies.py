"""Policies as code: rules over the resources a program would create.

Each rule is a plain function ``rule(resources) -> list[Violation]`` over
:class:`infra.offline.RecordedResource` (type token, logical name, inputs with Pulumi's
camelCase names, mocked id/outputs). ``check`` runs every rule; ``enforce`` raises
:class:`PolicyViolationError`. The same rules run over every stack in the tests (via
``infra.offline.run_offline``) and can run in CI before ``pulumi up``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import keyword
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from infra.exceptions import PolicyViolationError
from infra.gpu_catalog import AWS_GPU_INSTANCES, GPU_TAINT_KEY
from infra.node_autoscaling import (
    AUTOSCALER_DESCRIBE_ACTIONS,
    CLUSTER_AUTOSCALER_CHART,
    CLUSTER_AUTOSCALER_SERVICE_ACCOUNT,
)
from infra.offline import RecordedResource
from infra.tags import REQUIRED_TAG_KEYS

S3_BUCKET = "aws:s3/bucket:Bucket"
GCS_BUCKET = "gcp:storage/bucket:Bucket"
WILDCARD_ACTIONS = frozenset({"*", "*:*"})
# Actions AWS only authorises on Resource "*" (no resource-level permissions exist).
RESOURCE_STAR_ONLY_ACTIONS = frozenset(
    {
        "sts:GetCallerIdentity",
        "ecr:GetAuthorizationToken",
        "ec2:DescribeAvailabilityZones",
        *AUTOSCALER_DESCRIBE_ACTIONS,
    }
)
FORBIDDEN_MANAGED_POLICIES = frozenset(
    {
        "arn:aws:iam::aws:policy/AdministratorAccess",
        "arn:aws:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/IAMFullAccess",
    }
)
PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GCP_MEMBERS = frozenset({"allUsers", "allAuthenticatedUsers"})


@dataclass(frozen=True)
class Violation:
    rule: str
    resource_type: str
    resource_name: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource_type} {self.resource_name!r}: {self.message}"


Rule = Callable[[Sequence[RecordedResource]], list[Violation]]


def _of(resources: Iterable[RecordedResource], *types: str) -> list[RecordedResource]:
    return [r for r in resources if r.type in types]


def _refers_to(value: Any, resource: RecordedResource) -> bool:
    """Whether an input (a bucket name/id) points at ``resource``."""
    names = {resource.id, resource.outputs.get("bucket"), resource.outputs.get("name")}
    return value in names - {None}


def _violation(rule: str, resource: RecordedResource, message: str) -> Violation:
    return Violation(rule, resource.type, resource.name, message)


# -- encryption ---------------------------------------------------------------------------


def encryption_at_rest(resources: Sequence[RecordedResource]) -> list[Violation]:
    rule, found = "encryption", []
    sse_configs = _of(
        resources,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    for bucket in _of(resources, S3_BUCKET):
        algorithms = [
            (r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for c in sse_configs
            if _refers_to(c.inputs.get("bucket"), bucket)
            for r in c.inputs.get("rules") or []
        ]
        if not any(a in ("aws:kms", "aws:kms:dsse") for a in algorithms):
            found.append(
                _violation(rule, bucket, "no SSE-KMS server-side encryption configuration")
            )
    for table in _of(resources, "aws:dynamodb/table:Table"):
        if not (table.inputs.get("serverSideEncryption") or {}).get("enabled"):
            found.append(_violation(rule, table, "serverSideEncryption.enabled is not true"))
    for cluster in _of(resources, "aws:eks/cluster:Cluster"):
        configs = cluster.inputs.get("encryptionConfig") or {}
        if "secrets" not in (configs.get("resources") or []) or not (
            configs.get("provider") or {}
        ).get("keyArn"):
            found.append(
                _violation(rule, cluster, "secrets are not envelope-encrypted with a KMS key")
            )
    for queue in _of(resources, "aws:sqs/queue:Queue"):
        if not (queue.inputs.get("sqsManagedSseEnabled") or queue.inputs.get("kmsMasterKeyId")):
            found.append(_violation(rule, queue, "neither sqsManagedSseEnabled nor kmsMasterKeyId"))
    for template in _of(resources, "aws:ec2/launchTemplate:LaunchTemplate"):
        for mapping in template.inputs.get("blockDeviceMappings") or []:
            if str((mapping.get("ebs") or {}).get("encrypted")).lower() != "true":
                found.append(
                    _violation(
                        rule, template, f"EBS volume {mapping.get('deviceName')} unencrypted"
                    )
                )
    return found


# -- public buckets -----------------------------------------------------------------------


def _is_public_statement(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    anyone = principal == "*" or (
        isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))
    )
    return statement.get("Effect") == "Allow" and anyone and not statement.get("Condition")


def no_public_buckets(resources: Sequence[RecordedResource]) -> list[Violation]:
    rule, found = "no-public-buckets", []
    blocks = _of(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    policies = _of(resources, "aws:s3/bucketPolicy:BucketPolicy")
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket in _of(resources, S3_BUCKET):
        mine = [b for b in blocks if _refers_to(b.inputs.get("bucket"), bucket)]
        if not any(all(b.inputs.get(f) is True for f in flags) for b in mine):
            found.append(_violation(rule, bucket, "no public access block with all four flags on"))
        if bucket.inputs.get("acl") in PUBLIC_ACLS:
            found.append(_violation(rule, bucket, f"public ACL {bucket.inputs['acl']!r}"))
        for policy in (p for p in policies if _refers_to(p.inputs.get("bucket"), bucket)):
            if any(_is_public_statement(s) for s in _statements(policy.inputs.get("policy"))):
                found.append(_violation(rule, bucket, "bucket policy allows anyone"))
    for bucket in _of(resources, GCS_BUCKET):
        if bucket.inputs.get("publicAccessPrevention") != "enforced":
            found.append(_violation(rule, bucket, "publicAccessPrevention is not 'enforced'"))
        if bucket.inputs.get("uniformBucketLevelAccess") is not True:
            found.append(_violation(rule, bucket, "uniformBucketLevelAccess is not on"))
    for grant in _of(
        resources,
        "gcp:storage/bucketIAMMember:BucketIAMMember",
        "gcp:storage/bucketIAMBinding:BucketIAMBinding",
    ):
        members = _as_list(grant.inputs.get("member")) + _as_list(grant.inputs.get("members"))
        if PUBLIC_GCP_MEMBERS & set(members):
            found.append(_violation(rule, grant, "grants access to allUsers/allAuthenticatedUsers"))
    return found


# -- IMDSv2, GPU taints -------------------------------------------------------------------


def imdsv2_required(resources: Sequence[RecordedResource]) -> list[Violation]:
    found = []
    for resource in _of(
        resources, "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"
    ):
        tokens = (resource.inputs.get("metadataOptions") or {}).get("httpTokens")
        if tokens != "required":
            found.append(
                _violation("imdsv2", resource, f"metadataOptions.httpTokens is {tokens!r}")
            )
    return found


def _has_gpu_taint(taints: Any, effect: str) -> bool:
    return any(t.get("key") == GPU_TAINT_KEY and t.get("effect") == effect for t in taints or [])


def gpu_nodes_tainted(resources: Sequence[RecordedResource]) -> list[Violation]:
    rule, found = "gpu-taint", []
    for group in _of(resources, "aws:eks/nodeGroup:NodeGroup"):
        if _is_gpu_node_group(group) and not _has_gpu_taint(
            group.inputs.get("taints"), "NO_SCHEDULE"
        ):
            found.append(
                _violation(rule, group, f"GPU node group without {GPU_TAINT_KEY} NoSchedule taint")
            )
    for pool in _of(resources, "gcp:container/nodePool:NodePool", "gcp:container/cluster:Cluster"):
        config = pool.inputs.get("nodeConfig") or {}
        if config.get("guestAccelerators") and not _has_gpu_taint(
            config.get("taints"), "NO_SCHEDULE"
        ):
            found.append(
                _violation(rule, pool, f"GPU node pool without {GPU_TAINT_KEY} NoSchedule taint")
            )
    return found


# -- node autoscaling ---------------------------------------------------------------------


def _is_gpu_node_group(group: RecordedResource) -> bool:
    return "NVIDIA" in str(group.inputs.get("amiType", "")) or any(
        t in AWS_GPU_INSTANCES for t in group.inputs.get("instanceTypes") or []
    )


def _asg_names(group: RecordedResource) -> set[str]:
    return {
        asg.get("name")
        for resource in group.outputs.get("resources") or []
        for asg in resource.get("autoscalingGroups") or []
    } - {None}


def _can_grow(minimum: Any, maximum: Any) -> bool:
    # The engine hands numbers back as floats.
    return isinstance(maximum, int | float) and maximum >= 1 and maximum > (minimum or 0)


def gpu_node_autoscaling(resources: Sequence[RecordedResource]) -> list[Violation]:
    """Every GPU group/pool can grow and something grows it.

    EKS: max > min, node-template tags on the group's Auto Scaling group (scale from 0),
    a cluster-autoscaler release and its Pod Identity. GKE: pool autoscaling with max > min.
    """
    rule, found = "gpu-node-autoscaling", []
    gpu_groups = [g for g in _of(resources, "aws:eks/nodeGroup:NodeGroup") if _is_gpu_node_group(g)]
    autoscaler = any(
        r.inputs.get("chart") == CLUSTER_AUTOSCALER_CHART
        for r in _of(resources, "kubernetes:helm.sh/v3:Release")
    ) and any(
        r.inputs.get("serviceAccount") == CLUSTER_AUTOSCALER_SERVICE_ACCOUNT
        for r in _of(resources, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    )
    tagged = {
        t.inputs.get("autoscalingGroupName")
        for t in _of(resources, "aws:autoscaling/tag:Tag")
        if str((t.inputs.get("tag") or {}).get("key", "")).endswith("label/plinth.dev/gpu")
    }
    for group in gpu_groups:
        scaling = group.inputs.get("scalingConfig") or {}
        if not _can_grow(scaling.get("minSize"), scaling.get("maxSize")):
            found.append(_violation(rule, group, f"cannot grow: scalingConfig {scaling}"))
        if not _asg_names(group) & tagged:
            found.append(_violation(rule, group, "no node-template tags: cannot scale from 0"))
        if not autoscaler:
            found.append(_violation(rule, group, "no cluster-autoscaler (release + identity)"))
    for pool in _of(resources, "gcp:container/nodePool:NodePool"):
        if not (pool.inputs.get("nodeConfig") or {}).get("guestAccelerators"):
            continue
        limits = pool.inputs.get("autoscaling") or {}
        total = limits.get("totalMaxNodeCount") is not None
        minimum = limits.get("totalMinNodeCount" if total else "minNodeCount")
        maximum = limits.get("totalMaxNodeCount" if total else "maxNodeCount")
        if not _can_grow(minimum, maximum):
            found.append(_violation(rule, pool, f"no pool autoscaling that can grow: {limits}"))
    return found


# -- tags and labels ----------------------------------------------------------------------


def _init_parameters(type_token: str) -> frozenset[str]:
    """Input names of the SDK class behind ``type_token`` (empty when it cannot be found)."""
    try:
        package, rest = type_token.split(":", 1)
        module_path, class_name = rest.split(":", 1)
        module = module_path.split("/", 1)[0]
        module = f"{module}_" if keyword.iskeyword(module) else module
        cls = getattr(importlib.import_module(f"pulumi_{package}.{module}"), class_name)
        return frozenset(inspect.signature(cls._internal_init).parameters)
    except (ValueError, ImportError, AttributeError):
        return frozenset()


def standard_tags_present(resources: Sequence[RecordedResource]) -> list[Violation]:
    rule, found = "standard-tags", []
    for resource in resources:
        if resource.type.startswith("aws:"):
            field = "tags" if "tags" in _init_parameters(resource.type) else None
        elif resource.type.startswith("gcp:"):
            params = _init_parameters(resource.type)
            field = (
                "labels"
                if "labels" in params
                else ("resourceLabels" if "resource_labels" in params else None)
            )
        else:
            continue
        if field is None:
            continue
        present = resource.inputs.get(field) or {}
        missing = [k for k in REQUIRED_TAG_KEYS if not present.get(k)]
        if missing:
            found.append(_violation(rule, resource, f"{field} missing {', '.join(missing)}"))
    return found


# -- IAM ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _statements(document: Any) -> list[dict[str, Any]]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    if not isinstance(document, dict):
        return []
    return [s for s in _as_list(document.get("Statement")) if isinstance(s, dict)]


def _policy_documents(resource: RecordedResource) -> list[Any]:
    if resource.type in ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy"):
        return [resource.inputs.get("policy")]
    if resource.type == "aws:iam/role:Role":
        return [p.get("policy") for p in resource.inputs.get("inlinePolicies") or []]
    return []


def _scoped_by_resource_tag(statement: dict[str, Any]) -> bool:
    """Resource "*" narrowed to resources carrying a tag (e.g. a cluster's own groups)."""
    conditions = statement.get("Condition") or {}
    return any(
        key.startswith("aws:ResourceTag/")
        for operator, clauses in conditions.items()
        if operator in ("StringEquals", "StringLike")
        for key in clauses
    )


def least_privilege_iam(resources: Sequence[RecordedResource]) -> list[Violation]:
    rule, found = "iam-least-privilege", []
    for resource in resources:
        for statement in (s for doc in _policy_documents(resource) for s in _statements(doc)):
            if statement.get("Effect") != "Allow":
                continue
            actions = set(_as_list(statement.get("Action")))
            if actions & WILDCARD_ACTIONS:
                found.append(
                    _violation(rule, resource, f"Allow with wildcard action {sorted(actions)}")
                )
            elif (
                "*" in _as_list(statement.get("Resource"))
                and actions - RESOURCE_STAR_ONLY_ACTIONS
                and not _scoped_by_resource_tag(statement)
            ):
                found.append(_violation(rule, resource, f"Allow {sorted(actions)} on Resource '*'"))
    for attachment in _of(resources, "aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        if attachment.inputs.get("policyArn") in FORBIDDEN_MANAGED_POLICIES:
            found.append(_violation(rule, attachment, f"attaches {attachment.inputs['policyArn']}"))
    return found


RULES: tuple[Rule, ...] = (
    encryption_at_rest,
    no_public_buckets,
    imdsv2_required,
    gpu_nodes_tainted,
    gpu_node_autoscaling,
    standard_tags_present,
    least_privilege_iam,
)


def check(resources: Sequence[RecordedResource], rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every violation of every rule, in rule order."""
    return [violation for rule in rules for violation in rule(resources)]


def enforce(resources: Sequence[RecordedResource], rules: Sequence[Rule] = RULES) -> None:
    violations = check(resources, rules)
    if violations:
        raise PolicyViolationError([str(v) for v in violations])
