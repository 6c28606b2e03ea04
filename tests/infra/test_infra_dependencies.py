"""The Pulumi SDK pins match the APIs infra/ uses.

- Every ``aws.*``, ``gcp.*`` and ``k8s.*`` name the components and programs reference
  (resource classes, their ``...Args`` types, functions) exists in the installed SDKs.
- Every resource type token the stacks register (run under mocks) maps to an SDK class.
- The installed versions equal ``requirements.lock`` and satisfy ``pyproject.toml``'s
  ``infra`` extra, so the ranges users install from are the ones tested here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import tomllib
from pathlib import Path
from types import ModuleType

import pulumi
import pytest
from packaging.requirements import Requirement

from infra.preflight import StackTree, stack_files

ROOT = Path(__file__).resolve().parents[2]
SDK_MODULES = ("pulumi_aws", "pulumi_gcp", "pulumi_kubernetes")


def _sdk_aliases(tree: ast.Module) -> dict[str, str]:
    """``import pulumi_aws as aws`` -> {"aws": "pulumi_aws"}."""
    return {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in SDK_MODULES
    }


def _dotted(node: ast.AST) -> list[str] | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def sdk_references() -> set[tuple[str, str]]:
    """(module, dotted name) of every SDK attribute chain in infra/ (outermost chains only)."""
    found: set[tuple[str, str]] = set()
    for path in sorted((ROOT / "infra").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        aliases = _sdk_aliases(tree)
        inner = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in inner:
                continue
            chain = _dotted(node)
            if chain and chain[0] in aliases:
                found.add((aliases[chain[0]], ".".join(chain[1:])))
    return found


def _resolve(module: ModuleType, dotted: str) -> object:
    value: object = module
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def test_infra_uses_many_sdk_names() -> None:
    # Guard: the scanner finds the components' resource classes.
    references = sdk_references()
    assert ("pulumi_aws", "s3.BucketLifecycleConfiguration") in references
    assert ("pulumi_aws", "eks.PodIdentityAssociation") in references
    assert ("pulumi_gcp", "container.NodePool") in references
    assert ("pulumi_kubernetes", "policy.v1.PodDisruptionBudget") in references
    assert len(references) > 80


def test_every_sdk_name_infra_uses_exists() -> None:
    missing = []
    for module_name, dotted in sorted(sdk_references()):
        module = importlib.import_module(module_name)
        try:
            value = _resolve(module, dotted)
        except AttributeError:
            missing.append(f"{module_name}.{dotted}")
            continue
        if inspect.isclass(value) and issubclass(value, pulumi.CustomResource):
            assert "opts" in inspect.signature(value._internal_init).parameters
    assert missing == []


def _class_of(type_token: str) -> type:
    """``aws:s3/bucket:Bucket`` -> pulumi_aws.s3.Bucket; ``kubernetes:apps/v1:X`` -> apps.v1.X."""
    package, module_path, class_name = type_token.split(":")
    if package == "kubernetes":
        group, version = module_path.split("/")
        module_name = f"pulumi_kubernetes.{group.split('.')[0]}.{version}"
    else:
        module = module_path.split("/")[0]
        module_name = f"pulumi_{package}.{'lambda_' if module == 'lambda' else module}"
    cls = getattr(importlib.import_module(module_name), class_name)
    assert inspect.isclass(cls) and issubclass(cls, pulumi.Resource), type_token
    return cls


def test_every_resource_the_stacks_register_is_an_sdk_class() -> None:
    tree = StackTree(ROOT / "stacks")
    tokens = {
        r.type
        for stack_dir, stack in stack_files(ROOT / "stacks")
        for r in tree.run(stack_dir, stack).resources
        if r.type.split(":")[0] in ("aws", "gcp", "kubernetes")
    }
    assert "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration" in tokens
    for token in sorted(tokens):
        _class_of(token)


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[name.lower().replace("_", "-")] = version
    return pins


def _infra_extra() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["optional-dependencies"]["infra"]]


@pytest.mark.parametrize("requirement", _infra_extra(), ids=lambda r: r.name)
def test_lock_and_installed_versions_satisfy_the_infra_extra(requirement: Requirement) -> None:
    locked = _lock()[requirement.name.lower().replace("_", "-")]
    installed = importlib.metadata.version(requirement.name)
    assert installed == locked
    assert requirement.specifier.contains(locked), f"{requirement} vs lock {locked}"
    assert requirement.specifier.contains(installed)
    # Every provider is held below its next major (majors remove resources).
    assert any(spec.operator == "<" for spec in requirement.specifier), requirement
