"""Builds (and caches) the Python environment a deployment's replicas run in.

One virtualenv per distinct requirement set, under ``<cache_dir>/<sha256>``. The venv
is created without pip (fast), then the platform's own pip installs into it with
``pip --python <venv python>``. A ``.pth`` file appends the platform's site-packages
after the venv's own, so the model server (fastapi, uvicorn, gpu_nodes) imports inside
the venv while the user's requirements shadow platform packages of the same name;
requirements the platform already satisfies are not installed twice.

Entries are built in place under a per-hash lock and committed by writing a marker file
last, so a half-built or failed environment is never mistaken for a cached one.
"""

from __future__ import annotations

import collections
import importlib.metadata
import shutil
import site
import subprocess
import sys
import threading
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from control_plane.adapters.build_cache import (
    exclusive_lock,
    normalise_requirements,
    requirements_hash,
)
from control_plane.adapters.exceptions import BuildError

__all__ = ["BuildError", "BuiltEnvironment", "EnvironmentBuilder", "default_base_site_packages"]

_MARKER = ".plinth-built"
_PTH_NAME = "zz-plinth-platform.pth"
_TAIL_LINES = 40


@dataclass(frozen=True)
class BuiltEnvironment:
    python: Path  # interpreter to run replicas with
    venv_dir: Path
    requirements_hash: str
    cached: bool  # True when an existing environment was reused


def default_base_site_packages() -> list[Path]:
    """The running platform's site-packages, plus its source root when it is not installed.

    An installed platform (``pip install [-e] .``) is importable from site-packages alone;
    adding the checkout would also expose its tests/ and examples/ to model code.
    """
    dirs = [Path(p) for p in site.getsitepackages()]
    try:
        importlib.metadata.distribution("plinth")
    except importlib.metadata.PackageNotFoundError:
        # The checkout that holds control_plane/ also holds gpu_nodes/, which replicas run
        # (found by path: the control plane does not import the GPU-node packages).
        dirs.append(Path(__file__).resolve().parents[2])
    return dirs


class EnvironmentBuilder:
    """Creates per-requirements virtualenvs under ``cache_dir`` and reuses them."""

    def __init__(
        self,
        cache_dir: Path,
        base_site_packages: list[Path] | None = None,
        *,
        pip_timeout_s: float = 1800.0,
        platform_python: Path | None = None,
    ) -> None:
        self._cache_dir = Path(cache_dir)
        self._base = (
            default_base_site_packages() if base_site_packages is None else list(base_site_packages)
        )
        self._pip_timeout_s = pip_timeout_s
        self._platform_python = Path(platform_python or sys.executable)

    def requirements_hash(self, requirements: list[str]) -> str:
        return requirements_hash(requirements, self._base)

    def lookup(self, requirements: list[str]) -> BuiltEnvironment | None:
        """The cached environment for ``requirements``, or None (never builds)."""
        digest = self.requirements_hash(requirements)
        venv_dir = self._cache_dir / digest
        python = venv_dir / "bin" / "python"
        if (venv_dir / _MARKER).is_file() and python.exists():
            return BuiltEnvironment(python, venv_dir, digest, cached=True)
        return None

    def build(self, requirements: list[str], *, log: Callable[[str], None]) -> BuiltEnvironment:
        """The environment for ``requirements``; raises BuildError when pip fails."""
        hit = self.lookup(requirements)
        if hit is not None:
            log(f"using cached environment {hit.requirements_hash[:12]}")
            return hit
        digest = self.requirements_hash(requirements)
        lock = self._cache_dir / ".locks" / f"{digest}.lock"
        with exclusive_lock(lock, timeout_s=self._pip_timeout_s + 120):
            hit = self.lookup(requirements)  # a concurrent build may have finished it
            if hit is not None:
                log(f"using environment {digest[:12]} built concurrently")
                return hit
            venv_dir = self._cache_dir / digest
            try:
                self._build_into(venv_dir, normalise_requirements(requirements), log)
            except BaseException:
                shutil.rmtree(venv_dir, ignore_errors=True)
                raise
        return BuiltEnvironment(venv_dir / "bin" / "python", venv_dir, digest, cached=False)

    def _build_into(
        self, venv_dir: Path, requirements: list[str], log: Callable[[str], None]
    ) -> None:
        if venv_dir.exists():  # left by a build that died midway
            shutil.rmtree(venv_dir)
        log(f"creating environment {venv_dir.name[:12]} ({len(requirements)} requirements)")
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(venv_dir)
        site_dir = _venv_site_packages(venv_dir)
        # addsitedir (not a bare path line) so the platform's own .pth files run too,
        # e.g. the editable-install finder that makes ``gpu_nodes`` importable.
        (site_dir / _PTH_NAME).write_text(
            "".join(f"import site; site.addsitedir({str(d)!r})\n" for d in self._base)
        )
        if requirements:
            req_file = venv_dir / "plinth-requirements.txt"
            req_file.write_text("\n".join(requirements) + "\n")
            self._pip_install(venv_dir / "bin" / "python", req_file, log)
        marker_tmp = venv_dir / f"{_MARKER}.tmp"
        marker_tmp.write_text(venv_dir.name + "\n")
        marker_tmp.replace(venv_dir / _MARKER)
        log(f"environment {venv_dir.name[:12]} ready")

    def _pip_install(self, venv_python: Path, req_file: Path, log: Callable[[str], None]) -> None:
        command = [
            str(self._platform_python), "-m", "pip", "--python", str(venv_python), "install",
            "--no-input", "--disable-pip-version-check", "--progress-bar", "off",
            "-r", str(req_file),
        ]  # fmt: skip
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        timed_out = threading.Event()

        def kill_on_timeout() -> None:
            timed_out.set()
            proc.kill()

        watchdog = threading.Timer(self._pip_timeout_s, kill_on_timeout)
        watchdog.start()
        try:
            for line in proc.stdout or ():
                line = line.rstrip("\n")
                tail.append(line)
                log(line)
            returncode = proc.wait()
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if timed_out.is_set():
            raise BuildError(f"pip install ran past {self._pip_timeout_s:.0f}s", list(tail))
        if returncode != 0:
            last = next((t for t in reversed(tail) if t.strip()), "")
            raise BuildError(f"pip install failed (exit {returncode}): {last}", list(tail))


def _venv_site_packages(venv_dir: Path) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return venv_dir / "lib" / version / "site-packages"
