"""IAM policy documents as plain data, rendered to JSON once every ARN is known.

Statements are built from resource ARNs that are usually Pulumi outputs; ``policy_json``
waits for all of them and returns the document as an ``Output[str]``. Keeping the documents
as data (not ``aws.iam.get_policy_document`` invokes) lets the policy checks in
``infra.policies`` parse exactly what the engine receives.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

MANAGED_POLICY_PREFIX = "arn:aws:iam::aws:policy/"


@dataclass(frozen=True)
class Statement:
    actions: Sequence[str]
    resources: Sequence[pulumi.Input[str]]
    effect: str = "Allow"
    sid: str | None = None
    condition: dict[str, Any] | None = None
    principal: dict[str, Any] | str | None = None

    def render(self, resources: list[str]) -> dict[str, Any]:
        doc: dict[str, Any] = {"Effect": self.effect, "Action": sorted(self.actions)}
        if self.sid:
            doc["Sid"] = self.sid
        if self.principal is not None:
            doc["Principal"] = self.principal
        doc["Resource"] = resources
        if self.condition:
            doc["Condition"] = self.condition
        return doc


def policy_json(statements: Sequence[Statement]) -> pulumi.Output[str]:
    """The IAM policy document (``Version`` 2012-10-17) once every resource ARN resolved."""
    flat: list[pulumi.Input[str]] = [r for s in statements for r in s.resources]

    def render(arns: list[str]) -> str:
        rendered, offset = [], 0
        for statement in statements:
            count = len(statement.resources)
            rendered.append(statement.render(list(arns[offset : offset + count])))
            offset += count
        return json.dumps({"Version": "2012-10-17", "Statement": rendered})

    return pulumi.Output.all(*flat).apply(render)


def service_trust_policy(*services: str) -> str:
    """Trust policy letting AWS services (e.g. ``lambda.amazonaws.com``) assume a role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": sorted(services)},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def managed_policy(name: str) -> str:
    """ARN of an AWS-managed policy, e.g. ``managed_policy("AmazonEKSClusterPolicy")``."""
    return MANAGED_POLICY_PREFIX + name
