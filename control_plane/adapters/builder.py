"""Builds (and caches) the Python environment a deployment's replicas run in.

One virtualenv per distinct requirement set and runtime kind, under ``<cache_dir>/<sha256>``.
The venv is created without pip (fast), then the platform's own pip installs into it with
``pip --python <venv python>``. A ``.pth`` file appends ``<venv>/plinth-runtime`` after the
venv's own site-packages: symlinks to the model server's runtime only (see
``control_plane.adapters.model_runtime``), never the platform's whole site-packages, so a model that
forgets a requirement fails here as on a cluster, while the user's requirements shadow
runtime packages of the same name; requirements the runtime already satisfies are not
installed twice.

Entries are built in place under a per-hash lock and committed by writing a marker file
last, so a half-built or failed environment is never mistaken for a cached one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import venv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from control_plane.adapters._streaming import run_streaming
from control_plane.adapters.build_cache import (
    exclusive_lock,
    normalise_requirements,
    requirements_hash,
)
from control_plane.adapters.build_env import PipIndexSettings, clean_build_env
from control_plane.adapters.exceptions import BuildError
from control_plane.adapters.model_runtime import (
    RUNTIME_DIR,
    ModelRuntime,
    current_runtime,
    link_runtime,
    venv_site_packages,
)

__all__ = ["BuildError", "BuiltEnvironment", "EnvironmentBuilder"]

_MARKER = ".plinth-built"
_PTH_NAME = "zz-plinth-runtime.pth"


@dataclass(frozen=True)
class BuiltEnvironment:
    python: Path  # interpreter to run replicas with
    venv_dir: Path
    requirements_hash: str
    cached: bool  # True when an existing environment was reused


class EnvironmentBuilder:
    """Creates per-requirements virtualenvs under ``cache_dir`` and reuses them."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        pip_timeout_s: float = 1800.0,
        platform_python: Path | None = None,
        pip_index: PipIndexSettings | None = None,
    ) -> None:
        self._cache_dir = Path(cache_dir)
        # pip runs with a clean environment (no platform secrets): only these index settings.
        self._pip_index = pip_index or PipIndexSettings.from_host()
        self._pip_timeout_s = pip_timeout_s
        self._platform_python = Path(platform_python or sys.executable)
        # Found once per builder: the closure is read from installed metadata.
        self._runtimes = {engine: current_runtime(engine) for engine in (False, True)}

    def requirements_hash(self, requirements: list[str], *, engine: bool = False) -> str:
        return requirements_hash(requirements, self._runtimes[engine].identity)

    def lookup(self, requirements: list[str], *, engine: bool = False) -> BuiltEnvironment | None:
        """The cached environment for ``requirements``, or None (never builds)."""
        digest = self.requirements_hash(requirements, engine=engine)
        venv_dir = self._cache_dir / digest
        python = venv_dir / "bin" / "python"
        if (venv_dir / _MARKER).is_file() and python.exists():
            return BuiltEnvironment(python, venv_dir, digest, cached=True)
        return None

    def build(
        self, requirements: list[str], *, log: Callable[[str], None], engine: bool = False
    ) -> BuiltEnvironment:
        """The environment for ``requirements`` plus the model server's runtime (the built-in
        engine's too when ``engine``); raises BuildError when pip fails."""
        hit = self.lookup(requirements, engine=engine)
        if hit is not None:
            log(f"using cached environment {hit.requirements_hash[:12]}")
            return hit
        digest = self.requirements_hash(requirements, engine=engine)
        lock = self._cache_dir / ".locks" / f"{digest}.lock"
        with exclusive_lock(lock, timeout_s=self._pip_timeout_s + 120):
            hit = self.lookup(requirements, engine=engine)  # a concurrent build may have won
            if hit is not None:
                log(f"using environment {digest[:12]} built concurrently")
                return hit
            venv_dir = self._cache_dir / digest
            runtime = self._runtimes[engine]
            try:
                self._build_into(venv_dir, normalise_requirements(requirements), runtime, log)
            except BaseException:
                shutil.rmtree(venv_dir, ignore_errors=True)
                raise
        return BuiltEnvironment(venv_dir / "bin" / "python", venv_dir, digest, cached=False)

    def _build_into(
        self,
        venv_dir: Path,
        requirements: list[str],
        runtime: ModelRuntime,
        log: Callable[[str], None],
    ) -> None:
        if venv_dir.exists():  # left by a build that died midway
            shutil.rmtree(venv_dir)
        log(f"creating environment {venv_dir.name[:12]} ({len(requirements)} requirements)")
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(venv_dir)
        kind = "model server + built-in engine" if runtime.engine else "model server"
        linked = link_runtime(venv_dir, runtime)
        log(f"runtime: {kind} ({len(runtime.distributions)} distributions, {linked} entries)")
        # A plain path line, appended after site-packages: the user's requirements win.
        pth = venv_site_packages(venv_dir) / _PTH_NAME
        pth.write_text(f"{venv_dir / RUNTIME_DIR}\n")
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
        with tempfile.TemporaryDirectory(prefix="plinth-build-home-") as home:
            env = clean_build_env(Path(home), self._pip_index, extra_path=[venv_python.parent])
            self._run_pip(command, env, log)

    def _run_pip(self, command: list[str], env: dict[str, str], log: Callable[[str], None]) -> None:
        run = run_streaming(command, env=env, log=log, timeout_s=self._pip_timeout_s)
        if run.timed_out:
            raise BuildError(f"pip install ran past {self._pip_timeout_s:.0f}s", run.tail)
        if run.returncode != 0:
            last = next((t for t in reversed(run.tail) if t.strip()), "")
            raise BuildError(f"pip install failed (exit {run.returncode}): {last}", run.tail)
