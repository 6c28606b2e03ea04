"""The build context of a deployment's image: a Containerfile plus the files it copies.

Layers go cheapest-to-change last, so a second deployment that changes only its model code
reuses every layer up to the package's own:

  base (the config's ``base_image``, else the Plinth base) -> the model venv
  -> ``system_packages`` (apt) -> ``requirements`` -> ``build_commands``
  -> the model server (pinned runtime distributions + the platform's ``gpu_nodes``/``plinth``)
  -> the package itself (with its bundled ``packages/``).

The context is self-contained (a cluster-side builder can build it from the tarball stored in
the blob store); only the package index settings come from the builder's host at build time.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from control_plane.adapters.build_cache import normalise_requirements
from control_plane.adapters.model_runtime import PLATFORM_PACKAGES, ModelRuntime
from control_plane.adapters.model_runtime import package_dir as platform_package_dir

# Where things live inside every image (the Kubernetes manifests and the container runtime
# start the model server from these paths).
IMAGE_VENV = "/opt/plinth/venv"
IMAGE_PYTHON = f"{IMAGE_VENV}/bin/python"
IMAGE_RUNTIME_DIR = "/opt/plinth/runtime"
IMAGE_MODEL_DIR = "/opt/plinth/model"
# Not under /run: buildah mounts a tmpfs there, hiding a bind mount below it.
IMAGE_SECRETS_DIR = "/opt/plinth/secrets"
# The Plinth base image serves this Python (Debian bookworm's python3).
PLINTH_BASE_PYTHON = "py311"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass(frozen=True)
class ImageInputs:
    """What a deployment's image is built from (all already validated)."""

    base_image: str  # an image reference buildah can resolve
    python_executable: str  # the base's interpreter that creates the model venv
    system_packages: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    build_commands: list[str] = field(default_factory=list)
    engine: bool = False


def render_containerfile(inputs: ImageInputs, runtime_pins: list[str]) -> str:
    """The Containerfile, one layer per step; a step with nothing to do adds no layer."""
    lines = [
        f"FROM {inputs.base_image}",
        f"RUN {shlex.quote(inputs.python_executable)} -m venv {IMAGE_VENV}",
    ]
    if inputs.system_packages:
        packages = " ".join(shlex.quote(p) for p in sorted(set(inputs.system_packages)))
        lines.append(
            "RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
            f" --no-install-recommends {packages} && rm -rf /var/lib/apt/lists/*"
        )
    pip = f"{IMAGE_PYTHON} -m pip install --no-input --disable-pip-version-check"
    if inputs.requirements:
        lines += [
            "COPY requirements.txt /opt/plinth/requirements.txt",
            f"RUN {pip} -r /opt/plinth/requirements.txt",
        ]
    lines += [f"RUN {command}" for command in inputs.build_commands]
    if runtime_pins:
        lines += [
            "COPY runtime/requirements.txt /opt/plinth/runtime-requirements.txt",
            f"RUN {pip} --no-deps --target {IMAGE_RUNTIME_DIR}"
            " -r /opt/plinth/runtime-requirements.txt",
        ]
    lines += [
        f"COPY runtime/platform/ {IMAGE_RUNTIME_DIR}/",
        # After site-packages: the user's requirements shadow runtime packages of the same name.
        f"RUN {IMAGE_PYTHON} -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0],"
        f' "zz-plinth-runtime.pth").write_text("{IMAGE_RUNTIME_DIR}\\n")\'',
        f"COPY package/ {IMAGE_MODEL_DIR}/",
        f"ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PLINTH_SECRETS_DIR={IMAGE_SECRETS_DIR}",
        f"WORKDIR {IMAGE_MODEL_DIR}",
        "CMD " + json.dumps(model_server_command(port=8080, host="0.0.0.0")),
    ]
    return "\n".join(lines) + "\n"


def model_server_command(*, port: int, host: str) -> list[str]:
    """How the image starts its model server (pods and the local container runtime)."""
    return [
        IMAGE_PYTHON, "-m", "gpu_nodes.model_server", "--model-dir", IMAGE_MODEL_DIR,
        "--port", str(port), "--host", host,
    ]  # fmt: skip


def runtime_pins(runtime: ModelRuntime) -> list[str]:
    """``name==version`` of every runtime distribution, as the platform has them installed."""
    return sorted(f"{d.metadata['Name']}=={d.version}" for d in runtime.distributions)


def write_context(
    package_dir: Path, inputs: ImageInputs, runtime: ModelRuntime, dest: Path
) -> Path:
    """Fill ``dest`` with the Containerfile and every file it copies; return the Containerfile."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(package_dir, dest / "package", ignore=_IGNORED, symlinks=True)
    requirements = normalise_requirements(inputs.requirements)
    (dest / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    pins = runtime_pins(runtime)
    (dest / "runtime").mkdir()
    (dest / "runtime" / "requirements.txt").write_text("".join(f"{p}\n" for p in pins))
    for name in PLATFORM_PACKAGES:
        target = dest / "runtime" / "platform" / name
        shutil.copytree(platform_package_dir(name), target, ignore=_IGNORED)
    normalised = ImageInputs(
        inputs.base_image,
        inputs.python_executable,
        inputs.system_packages,
        requirements,
        inputs.build_commands,
        inputs.engine,
    )
    containerfile = dest / "Containerfile"
    containerfile.write_text(render_containerfile(normalised, pins))
    return containerfile


def tar_context(context_dir: Path, tar_path: Path) -> Path:
    """The context as one gzip tarball (what the blob store keeps for a cluster builder)."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(context_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(context_dir)), recursive=False)
    return tar_path
