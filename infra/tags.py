"""Standard tags (AWS) and labels (GCP, Kubernetes) put on every taggable resource.

Components take a :class:`StandardTags` and call ``aws(component)`` / ``gcp(component)`` /
``k8s(component)`` for each resource they create; ``infra.policies`` checks that every
taggable resource recorded in a run carries :data:`REQUIRED_TAG_KEYS`. Tags are passed
explicitly rather than through a stack transform because the Pulumi mock monitor does not
run transforms, and the policy tests must see exactly what the engine would receive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from infra.exceptions import InfraConfigError

REQUIRED_TAG_KEYS: tuple[str, ...] = ("project", "stack", "region", "component", "managed-by")

_GCP_LABEL_VALUE = re.compile(r"[^a-z0-9_-]")


def gcp_label_value(value: str) -> str:
    """GCP label values: lowercase letters, digits, ``_`` and ``-``, at most 63 characters."""
    return _GCP_LABEL_VALUE.sub("-", value.lower())[:63]


@dataclass(frozen=True)
class StandardTags:
    project: str
    stack: str
    region: str
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("project", "stack", "region"):
            if not getattr(self, name):
                raise InfraConfigError(f"tags.{name}", "must not be empty")

    def aws(self, component: str) -> dict[str, str]:
        """Tags for an AWS resource of ``component`` (e.g. "network", "eks")."""
        return {
            **self.extra,
            "project": self.project,
            "stack": self.stack,
            "region": self.region,
            "component": component,
            "managed-by": "pulumi",
        }

    def gcp(self, component: str) -> dict[str, str]:
        """The same keys as GCP labels (values normalised to the label alphabet)."""
        return {key: gcp_label_value(value) for key, value in self.aws(component).items()}

    def k8s(self, component: str) -> dict[str, str]:
        """Kubernetes labels, using the recommended ``app.kubernetes.io`` keys."""
        return {
            "app.kubernetes.io/part-of": self.project,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "pulumi",
            "plinth.dev/stack": self.stack,
        }
