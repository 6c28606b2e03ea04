"""Records the control plane keeps in the metadata store, as dataclasses.

Each record converts to and from the JSON dict stored under its key. ``version`` is the
store's item version the record was read at (0 = never stored); it is not serialised.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from control_plane.exceptions import Conflict, ValidationFailed

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_id(length: int = 8) -> str:
    """Baseten-style id: 8 lowercase alphanumerics."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


class DeploymentStatus(StrEnum):
    BUILDING = "BUILDING"
    DEPLOYING = "DEPLOYING"
    LOADING_MODEL = "LOADING_MODEL"
    ACTIVE = "ACTIVE"
    UNHEALTHY = "UNHEALTHY"
    FAILED = "FAILED"
    INACTIVE = "INACTIVE"


# Statuses in which replicas may exist and the reconciler is in charge.
RUNNING_STATUSES = frozenset(
    {
        DeploymentStatus.DEPLOYING,
        DeploymentStatus.LOADING_MODEL,
        DeploymentStatus.ACTIVE,
        DeploymentStatus.UNHEALTHY,
        DeploymentStatus.INACTIVE,
    }
)

DEFAULT_ENVIRONMENTS = ("development", "production")


@dataclass(frozen=True)
class AutoscalingSettings:
    """Baseten's autoscaling settings, names and defaults."""

    min_replica: int = 0
    max_replica: int = 1
    autoscaling_window: int = 60
    scale_down_delay: int = 900
    concurrency_target: int = 1
    target_utilization_percentage: int = 70

    def validate(self) -> AutoscalingSettings:
        checks = (
            ("min_replica", self.min_replica >= 0, ">= 0"),
            ("max_replica", self.max_replica >= 1, ">= 1"),
            (
                "autoscaling_window",
                10 <= self.autoscaling_window <= 3600,
                "between 10 and 3600 seconds",
            ),
            (
                "scale_down_delay",
                0 <= self.scale_down_delay <= 3600,
                "between 0 and 3600 seconds",
            ),
            ("concurrency_target", self.concurrency_target >= 1, ">= 1"),
            (
                "target_utilization_percentage",
                1 <= self.target_utilization_percentage <= 100,
                "between 1 and 100",
            ),
        )
        for name, ok, rule in checks:
            if not ok:
                value = getattr(self, name)
                raise ValidationFailed(f"autoscaling_settings.{name}: {value} must be {rule}")
        if self.max_replica < self.min_replica:
            # Each value is fine alone (the API schema checks those); together with the
            # settings they merge into they conflict: 409, not 422.
            raise Conflict(
                f"autoscaling_settings.max_replica: {self.max_replica} must be >= "
                f"min_replica ({self.min_replica})"
            )
        return self

    def with_changes(self, changes: dict[str, Any]) -> AutoscalingSettings:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValidationFailed(f"autoscaling_settings: unknown field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes).validate()

    def replicas_when_up(self) -> int:
        """Replicas to run when a deployment is brought up from zero."""
        return max(self.min_replica, 1)

    def clamp(self, desired: int) -> int:
        return max(self.min_replica, min(desired, self.max_replica))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AutoscalingSettings:
        return cls(**(data or {}))


@dataclass
class ModelRecord:
    id: str
    name: str
    created_at: float
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int = 0) -> ModelRecord:
        return cls(id=data["id"], name=data["name"], created_at=data["created_at"], version=version)


@dataclass
class DeploymentRecord:
    id: str
    model_id: str
    name: str
    status: DeploymentStatus
    created_at: float
    status_changed_at: float
    archive_sha256: str
    config: dict[str, Any]
    # Environment this deployment joins once it is ACTIVE (push target or explicit promote).
    target_environment: str | None = None
    desired_replicas: int = 0
    autoscaling_settings: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    model_dir: str | None = None
    python: str | None = None
    # The deployment's OCI image, by digest (registry/repo@sha256:...), when images are built.
    image: str | None = None
    status_message: str = ""
    # Manifest ids of the mirrored ``weights:`` entries (set by the build), in config order.
    weights_manifests: list[str] = field(default_factory=list)
    # status, desired_replicas and retire_at change only through domain/lifecycle.py.
    # Replaced in an environment: keeps serving (stale gateway tables, in-flight requests)
    # until this time, then the reconciler scales it to zero. None: not draining.
    retire_at: float | None = None
    # Answers OpenAI-style /v1 routes (set by the build: package.serves_openai_api).
    openai_api: bool = False
    version: int = 0

    @property
    def key(self) -> str:
        return deployment_key(self.model_id, self.id)

    @property
    def is_engine(self) -> bool:
        return bool(self.config.get("engine"))

    @property
    def predict_concurrency(self) -> int:
        runtime = self.config.get("runtime") or {}
        return int(runtime.get("predict_concurrency") or 1)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("version")
        data["status"] = self.status.value
        data["autoscaling_settings"] = self.autoscaling_settings.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int = 0) -> DeploymentRecord:
        values = dict(data)
        values["status"] = DeploymentStatus(values["status"])
        values["autoscaling_settings"] = AutoscalingSettings.from_dict(
            values.get("autoscaling_settings")
        )
        return cls(**values, version=version)


@dataclass
class PromotionLock:
    deployment_id: str
    started_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"deployment_id": self.deployment_id, "started_at": self.started_at}


@dataclass
class EnvironmentRecord:
    model_id: str
    name: str
    created_at: float
    autoscaling_settings: AutoscalingSettings = field(default_factory=AutoscalingSettings)
    current_deployment_id: str | None = None
    previous_deployment_id: str | None = None
    # Oldest first: {"deployment_id", "promoted_at"} of every promotion into this environment.
    history: list[dict[str, Any]] = field(default_factory=list)
    promotion: PromotionLock | None = None
    version: int = 0

    @property
    def key(self) -> str:
        return environment_key(self.model_id, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "name": self.name,
            "created_at": self.created_at,
            "autoscaling_settings": self.autoscaling_settings.to_dict(),
            "current_deployment_id": self.current_deployment_id,
            "previous_deployment_id": self.previous_deployment_id,
            "history": self.history,
            "promotion": self.promotion.to_dict() if self.promotion else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], version: int = 0) -> EnvironmentRecord:
        promotion = data.get("promotion")
        return cls(
            model_id=data["model_id"],
            name=data["name"],
            created_at=data["created_at"],
            autoscaling_settings=AutoscalingSettings.from_dict(data.get("autoscaling_settings")),
            current_deployment_id=data.get("current_deployment_id"),
            previous_deployment_id=data.get("previous_deployment_id"),
            history=list(data.get("history") or []),
            promotion=PromotionLock(**promotion) if promotion else None,
            version=version,
        )


def deployment_key(model_id: str, deployment_id: str) -> str:
    return f"{model_id}/{deployment_id}"


def environment_key(model_id: str, name: str) -> str:
    return f"{model_id}/{name}"
