"""Which config fields each runtime records but cannot honour, and the warnings naming them."""

from __future__ import annotations

import sys

import pytest

from plinth.spec.config import TrussConfig
from plinth.spec.honoured import (
    KUBERNETES_RUNTIME,
    PROCESS_RUNTIME,
    UNHONOURED_FIELDS,
    unhonoured_fields,
    unhonoured_warnings,
)

PLATFORM_PYTHON = f"py{sys.version_info.major}{sys.version_info.minor}"


def config(**fields: object) -> TrussConfig:
    return TrussConfig.model_validate({"model_name": "m", **fields})


@pytest.mark.parametrize("runtime", [PROCESS_RUNTIME, KUBERNETES_RUNTIME])
def test_defaults_warn_about_nothing(runtime: str) -> None:
    assert unhonoured_fields(config(), runtime) == []


def test_each_field_set_is_named_with_its_value_and_why() -> None:
    cfg = config(
        system_packages=["ffmpeg"],
        base_image={"image": "nvcr.io/x:1"},
        resources={"instance_type": "g5.xlarge", "node_count": 2},
        runtime={"enable_debug_logs": True},
        model_cache=[{"repo_id": "org/repo"}],
    )
    assert unhonoured_fields(cfg, PROCESS_RUNTIME) == [
        "base_image",
        "system_packages",
        "model_cache",
        "resources.instance_type",
        "resources.node_count",
        "runtime.enable_debug_logs",
    ]
    warnings = unhonoured_warnings(cfg, KUBERNETES_RUNTIME)
    assert warnings[0] == (
        "config field 'base_image' ({'image': 'nvcr.io/x:1'}) is recorded but not honoured by the"
        " kubernetes runtime: replicas do not run in an image built from it"
    )
    assert "'resources.node_count' (2)" in warnings[4] and "one node" in warnings[4]


def test_python_version_warns_only_when_it_differs_from_what_replicas_run() -> None:
    other = "py310" if PLATFORM_PYTHON != "py310" else "py312"
    assert "python_version" in unhonoured_fields(config(python_version=other), PROCESS_RUNTIME)
    if PLATFORM_PYTHON != "py311":  # the default never warns
        same = unhonoured_fields(config(python_version=PLATFORM_PYTHON), PROCESS_RUNTIME)
        assert "python_version" not in same


def test_a_field_a_runtime_learns_to_honour_is_removed_in_one_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = config(system_packages=["ffmpeg"], build_commands=["make"])
    learned = {k: v for k, v in UNHONOURED_FIELDS[PROCESS_RUNTIME].items() if k != "build_commands"}
    monkeypatch.setitem(UNHONOURED_FIELDS, PROCESS_RUNTIME, learned)
    assert unhonoured_fields(cfg, PROCESS_RUNTIME) == ["system_packages"]
    assert unhonoured_fields(cfg, "no-such-runtime") == []
