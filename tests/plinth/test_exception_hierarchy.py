"""One exception hierarchy: every exceptions.py roots its classes at its plane's base."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from control_plane.exceptions import ControlPlaneError
from gpu_nodes.exceptions import GpuNodeError
from infra.exceptions import InfraError
from lambdas.exceptions import LambdaError
from plinth.exceptions import PlinthError

ROOT = Path(__file__).resolve().parents[2]
PLANE_BASES = {
    "plinth": PlinthError,
    "control_plane": ControlPlaneError,
    "gpu_nodes": GpuNodeError,
    "lambdas": LambdaError,
    "infra": InfraError,
}
# Error modules that are not called exceptions.py: the ports' errors.
OTHER_ERROR_MODULES = ("control_plane.ports.store", "control_plane.ports.blob")


def exception_modules() -> list[str]:
    names = []
    for plane in PLANE_BASES:
        for path in sorted((ROOT / plane).rglob("exceptions.py")):
            names.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return names + list(OTHER_ERROR_MODULES)


def test_every_plane_has_exception_modules() -> None:
    planes = {name.split(".")[0] for name in exception_modules()}
    assert planes == set(PLANE_BASES)
    assert len(exception_modules()) >= 12


@pytest.mark.parametrize("module_name", exception_modules())
def test_exceptions_are_rooted_at_their_plane_base(module_name: str) -> None:
    module = importlib.import_module(module_name)
    plane_base = PLANE_BASES[module_name.split(".")[0]]
    defined = [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module_name and issubclass(cls, BaseException)
    ]
    warnings = [cls for cls in defined if issubclass(cls, Warning)]
    errors = [cls for cls in defined if cls not in warnings]
    assert errors, f"{module_name} defines no exception"
    unrooted = [cls.__name__ for cls in errors if not issubclass(cls, plane_base)]
    assert unrooted == [], f"not rooted at {plane_base.__name__}"
    assert all(issubclass(cls, PlinthError) for cls in errors)


def test_domain_catches_the_plane_base_not_adapter_or_weight_errors() -> None:
    source = (ROOT / "control_plane" / "domain" / "pipeline.py").read_text()
    assert "control_plane.adapters" not in source
    assert "gpu_nodes.weights.exceptions" not in source


def test_plane_bases_import_nothing_heavy() -> None:
    code = (
        "import sys; import plinth.exceptions, gpu_nodes.exceptions, control_plane.exceptions,"
        " lambdas.exceptions, gpu_nodes.engine.exceptions;"
        " heavy = {'torch', 'fastapi', 'pydantic', 'boto3', 'pulumi', 'httpx'};"
        " print(sorted(heavy & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"


def test_openai_error_body_is_the_same_from_gateway_and_openai_server() -> None:
    from gpu_nodes.gateway.exceptions import ModelNotFoundError
    from gpu_nodes.openai.exceptions import ModelNotFound

    gateway = ModelNotFoundError("no model 'x'", param="model").body(openai=True)
    server = ModelNotFound("no model 'x'", param="model").to_body()
    assert (
        gateway
        == server
        == {
            "error": {
                "message": "no model 'x'",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            }
        }
    )
