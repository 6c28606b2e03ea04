"""What a model's environment may import besides its own requirements: the model server.

A replica's venv holds the package's requirements plus the model server's own runtime, and
nothing else of the platform, so a forgotten requirement fails here as it would on a
cluster (the image builder does the same for containers). The runtime is the closure of a
short list of distributions (fastapi, uvicorn, pydantic, ...; plus torch, tokenizers, ...
for packages served by the built-in LLM engine), taken from the platform's own installation
and exposed by symlinks in one directory. Nothing is downloaded or copied, so a venv still
builds in well under a second offline, and the user's requirements, installed into the
venv's site-packages, come first on sys.path and shadow a runtime package of the same name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What `python -m gpu_nodes.model_server` imports (Truss routes, the weights node agent,
# the replica's /metrics).
MODEL_SERVER_DISTRIBUTIONS = (
    "fastapi", "uvicorn", "httptools", "uvloop", "httpx", "pydantic", "pyyaml", "pathspec",
    "packaging", "fastcdc", "prometheus-client",
)  # fmt: skip
# Added for packages with an `engine:` section: the built-in engine and its OpenAI server.
ENGINE_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "safetensors", "xgrammar")
# The platform's own packages a replica imports; the rest (control_plane, tests) stays out.
# Found by name, not imported: the control plane does not import the GPU-node packages.
PLATFORM_PACKAGES = ("gpu_nodes", "plinth")
# Inside a built venv: the runtime's symlink directory and the record of what it links.
RUNTIME_DIR = "plinth-runtime"
RUNTIME_RECORD = "plinth-runtime.json"


@dataclass(frozen=True)
class ModelRuntime:
    """The files one kind of replica needs, found in the running platform's installation."""

    engine: bool

    @cached_property
    def distributions(self) -> list[importlib.metadata.Distribution]:
        roots = MODEL_SERVER_DISTRIBUTIONS + (ENGINE_DISTRIBUTIONS if self.engine else ())
        return _closure(roots)

    @cached_property
    def identity(self) -> str:
        """Changes when any exposed distribution or platform package location changes."""
        parts = sorted(
            f"{canonicalize_name(d.metadata['Name'])}=={d.version}@{d.locate_file('')}"
            for d in self.distributions
        )
        parts += [str(package_dir(name)) for name in PLATFORM_PACKAGES]
        return hashlib.sha256(json.dumps([self.engine, parts]).encode()).hexdigest()

    def link_into(self, runtime_dir: Path) -> int:
        """Symlink every exposed top-level module, package and .dist-info; return the count."""
        runtime_dir.mkdir(parents=True, exist_ok=True)
        targets: dict[str, Path] = {}
        for dist in self.distributions:
            for name in _top_level_entries(dist.files or ()):
                targets.setdefault(name, Path(str(dist.locate_file(name))))
        for package in PLATFORM_PACKAGES:
            targets[package] = package_dir(package)
        for name, target in targets.items():
            if target.exists():
                (runtime_dir / name).symlink_to(target)
        return len(targets)


@functools.cache
def current_runtime(engine: bool) -> ModelRuntime:
    """This process's runtime of each kind, found once (the closure reads installed metadata)."""
    return ModelRuntime(engine)


def link_runtime(venv_dir: Path, runtime: ModelRuntime) -> int:
    """(Re)build ``venv_dir``'s runtime directory and record what it links; return the count.

    The new directory is made beside the old one and swapped in, so a replica starting
    meanwhile sees either the old links or the new ones, never a half-made directory.
    """
    fresh = venv_dir / f"{RUNTIME_DIR}.new"
    shutil.rmtree(fresh, ignore_errors=True)
    linked = runtime.link_into(fresh)
    target = venv_dir / RUNTIME_DIR
    stale = venv_dir / f"{RUNTIME_DIR}.old"
    shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        target.rename(stale)
    fresh.rename(target)
    shutil.rmtree(stale, ignore_errors=True)
    record = {"engine": runtime.engine, "identity": runtime.identity}
    (venv_dir / RUNTIME_RECORD).write_text(json.dumps(record) + "\n")
    return linked


def refresh_runtime(venv_dir: Path) -> bool:
    """Relink ``venv_dir``'s runtime when the platform changed since it was built.

    An environment keeps the links made at build time; after a platform upgrade they may
    miss a package the new model server imports (a replica of an existing deployment then
    dies with ModuleNotFoundError) or point at versions no longer installed. The user's
    requirements live in the venv's own site-packages and are untouched. Returns True when
    it relinked; a directory that is not a Plinth-built venv is left alone.
    """
    if not (venv_dir / RUNTIME_DIR).is_dir():
        return False
    try:
        record = json.loads((venv_dir / RUNTIME_RECORD).read_text())
        engine = bool(record["engine"])
        built_for = str(record["identity"])
    except (OSError, ValueError, KeyError, TypeError):
        # Built before the record existed: the engine's runtime is the one that links torch.
        engine = (venv_dir / RUNTIME_DIR / "torch").exists()
        built_for = ""
    runtime = current_runtime(engine)
    if built_for == runtime.identity:
        return False
    link_runtime(venv_dir, runtime)
    return True


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise RuntimeError(f"platform package {name!r} is not installed next to the control plane")
    return Path(spec.origin).resolve().parent


def _top_level_entries(files: Iterable[importlib.metadata.PackagePath]) -> set[str]:
    """First path components that are importable or metadata: no scripts, no __pycache__."""
    names = set()
    for file in files:
        first = file.parts[0] if file.parts else ""
        if first and first not in ("..", "__pycache__") and not first.endswith(".data"):
            names.add(first)
    return names


def _closure(roots: Iterable[str]) -> list[importlib.metadata.Distribution]:
    """The roots and everything they require (markers evaluated here, extras not followed)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    pending = list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # optional on this platform (uvloop on Windows, an engine not installed)
        found[name] = dist
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def venv_site_packages(venv_dir: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv_dir / "lib" / version / "site-packages"
