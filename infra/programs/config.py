"""Stack config at the trust boundary: ``Pulumi.<stack>.yaml`` values -> a pydantic model.

Keys are camelCase in YAML (Pulumi's convention) and snake_case in Python. The Pulumi CLI
hands every value to the program as a string; structured values (lists, objects) arrive
as JSON, scalars are coerced by pydantic. Errors name the config key and the problem.
"""

from __future__ import annotations

import json
from typing import Any, Self

import pulumi
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from infra.exceptions import InfraConfigError


class StackConfig(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    @classmethod
    def from_mapping(cls, raw: dict[str, Any], where: str = "config") -> Self:
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise InfraConfigError(f"{where}:{key}", first["msg"]) from None

    @classmethod
    def from_pulumi(cls, namespace: str | None = None, **known: Any) -> Self:
        """Read every field this model declares from the project's Pulumi config.

        ``known`` supplies fields that come from elsewhere (e.g. ``region`` from
        ``aws:region``); the stack config cannot override them.
        """
        config = pulumi.Config(namespace)
        raw: dict[str, Any] = dict(known)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            value = config.get(key)
            if value is None or name in known:
                continue
            raw[key] = _decode(value, f"{config.name}:{key}")
        return cls.from_mapping(raw, where=config.name)


def _decode(value: str, key: str) -> Any:
    if value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InfraConfigError(key, f"invalid JSON: {exc}") from None
    return value


def aws_region() -> str:
    """The provider region (``aws:region``), which every AWS stack must set."""
    region = pulumi.Config("aws").get("region")
    if not region:
        raise InfraConfigError("aws:region", "not set (pulumi config set aws:region us-east-1)")
    return region
