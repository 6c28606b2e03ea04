"""The image build context: layer order, what is refused at push (no buildah needed)."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from control_plane.adapters.build_env import PipIndexSettings, container_pip_mounts
from control_plane.adapters.image_context import (
    ImageInputs,
    render_containerfile,
    tar_context,
    write_context,
)
from control_plane.adapters.model_runtime import ModelRuntime
from control_plane.domain.images import check_buildable
from control_plane.exceptions import ValidationFailed
from plinth.spec.config import TrussConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_layers_go_cheapest_to_change_last() -> None:
    inputs = ImageInputs(
        base_image="localhost/plinth/base:x",
        python_executable="python3",
        system_packages=["jq", "curl"],
        requirements=["tabulate==0.10.0"],
        build_commands=["echo one > /one", "echo two > /two"],
    )
    lines = render_containerfile(inputs, ["fastapi==1.0"]).splitlines()
    order = [
        "FROM localhost/plinth/base:x",
        "-m venv /opt/plinth/venv",
        "apt-get install -y -qq --no-install-recommends curl jq",
        "pip install --no-input --disable-pip-version-check -r /opt/plinth/requirements.txt",
        "RUN echo one > /one",
        "RUN echo two > /two",
        "--target /opt/plinth/runtime",
        "COPY runtime/platform/",
        "COPY package/ /opt/plinth/model/",
    ]
    positions = [next(i for i, line in enumerate(lines) if part in line) for part in order]
    assert positions == sorted(positions), lines
    assert lines[-1].startswith('CMD ["/opt/plinth/venv/bin/python", "-m", "gpu_nodes.model_')


def test_steps_with_nothing_to_do_add_no_layer() -> None:
    text = render_containerfile(ImageInputs("b", "python3"), ["x==1"])
    assert "apt-get" not in text and "requirements.txt -" not in text
    assert "/opt/plinth/requirements.txt" not in text


def test_context_holds_the_package_the_runtime_and_pins(tmp_path: Path) -> None:
    inputs = ImageInputs("b", "python3", requirements=["Tabulate == 0.10.0"])
    write_context(EXAMPLES / "hello", inputs, ModelRuntime(False), tmp_path / "ctx")
    ctx = tmp_path / "ctx"
    assert (ctx / "package" / "config.yaml").is_file()
    assert (ctx / "requirements.txt").read_text() == "tabulate==0.10.0\n"
    pins = (ctx / "runtime" / "requirements.txt").read_text().splitlines()
    assert any(p.startswith("fastapi==") for p in pins) and not any("torch" in p for p in pins)
    assert (ctx / "runtime" / "platform" / "gpu_nodes" / "model_server" / "__main__.py").is_file()
    assert not (ctx / "runtime" / "platform" / "control_plane").exists()
    assert not list(ctx.rglob("__pycache__"))
    tar = tar_context(ctx, tmp_path / "ctx.tar.gz")
    with tarfile.open(tar) as archive:
        assert "Containerfile" in archive.getnames()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"python_version": "py39"}, "config.python_version: 'py39' is not provided"),
        ({"base_image": {"python_executable_path": "/usr/bin/python3"}}, "config.base_image.image"),
        (
            {"base_image": {"image": "x", "python_executable_path": "python3"}},
            "config.base_image.python_executable_path: must be an absolute path",
        ),
    ],
)
def test_configs_no_image_can_be_built_for_are_refused(config: dict, message: str) -> None:
    with pytest.raises(ValidationFailed, match=re.escape(message)):
        check_buildable(TrussConfig.model_validate(config))


def test_another_python_with_its_own_base_image_is_accepted() -> None:
    config = {"python_version": "py39", "base_image": {"image": "registry.local/py39:1"}}
    check_buildable(TrussConfig.model_validate(config))


def test_host_pip_files_are_mounted_and_rewritten(tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    settings = PipIndexSettings(
        {"PIP_INDEX_URL": "https://mirror.example/simple"},
        f"[global]\ncert = {cert}\nfind-links = {wheels}\n",
    )
    volumes = container_pip_mounts(settings, tmp_path / "pip")
    written = (tmp_path / "pip" / "pip.conf").read_text()
    assert "cert = /etc/plinth-pip/0-ca.pem" in written
    assert "index-url = https://mirror.example/simple" in written
    assert f"{cert}:/etc/plinth-pip/0-ca.pem:ro" in volumes
    assert f"{wheels}:{wheels}:ro" in volumes
    assert f"{tmp_path / 'pip' / 'pip.conf'}:/etc/pip.conf:ro" in volumes
