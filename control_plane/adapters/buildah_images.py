"""Image builder adapter: buildah (chroot isolation) builds a deployment's context and pushes
it to an OCI registry; the answer is ``registry/repo@sha256:...``.

``--layers`` keeps every step's layer in buildah's storage, keyed by its parent and its
instruction (its files' checksums for COPY), so a second deployment with the same base,
system packages and requirements reuses those layers and only rebuilds what follows.
Builds run with a clean environment (``base_image.tool_env``); RUN steps see the host's pip
index settings through read-only bind mounts and share one pip download cache.
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from control_plane.adapters._streaming import run_streaming
from control_plane.adapters.base_image import PlinthBaseImage, buildah_command, tool_env
from control_plane.adapters.build_env import PipIndexSettings, container_pip_mounts
from control_plane.adapters.exceptions import BuildError
from control_plane.adapters.image_context import ImageInputs, tar_context, write_context
from control_plane.adapters.model_runtime import ModelRuntime
from control_plane.ports.images import ImageRequest

_STEP = re.compile(r"^STEP \d+/\d+: ")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BuildahImageBuilder:
    """Builds under ``work_dir``; ``cache_dir`` (pip downloads, locks) may be shared."""

    def __init__(
        self,
        registry: str,
        work_dir: Path,
        cache_dir: Path,
        *,
        pip_index: PipIndexSettings | None = None,
        tls_verify: bool = False,
        timeout_s: float = 3600.0,
        storage_root: Path | None = None,  # None: the machine's image storage (shared cache)
    ) -> None:
        self.registry = registry  # host:port
        self._work_dir = Path(work_dir)
        self._cache_dir = Path(cache_dir)
        self._pip_index = pip_index or PipIndexSettings.from_host()
        self._tls_verify = tls_verify
        self._timeout_s = timeout_s
        self._buildah = buildah_command(storage_root)
        self._base = PlinthBaseImage(self._cache_dir / ".locks", storage_root=storage_root)
        self._runtimes = {engine: ModelRuntime(engine) for engine in (False, True)}

    def prepare_context(self, request: ImageRequest, work_dir: Path) -> Path:
        context = work_dir / "context"
        if context.exists():
            shutil.rmtree(context)
        inputs = ImageInputs(
            base_image=request.base_image or self._base.reference,
            python_executable=request.python_executable or "python3",
            system_packages=list(request.system_packages),
            requirements=list(request.requirements),
            build_commands=list(request.build_commands),
            engine=request.engine,
        )
        write_context(request.package_dir, inputs, self._runtimes[request.engine], context)
        tar = tar_context(context, work_dir / "context.tar.gz")
        shutil.rmtree(context)  # what gets built is the tarball, as a cluster builder gets it
        return tar

    def build_and_push(
        self, context_tar: Path, request: ImageRequest, log: Callable[[str], None]
    ) -> str:
        if request.base_image is None:
            self._base.ensure(log)
        build_dir = self._work_dir / request.deployment_id
        if build_dir.exists():
            shutil.rmtree(build_dir)
        context = build_dir / "context"
        context.mkdir(parents=True)
        with tarfile.open(context_tar) as tar:
            tar.extractall(context, filter="data")
        local_tag = f"localhost/{request.repository}:{request.deployment_id}"
        try:
            self._bud(context, build_dir, local_tag, log)
            return self._push(local_tag, request, build_dir, log)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)

    def _bud(self, context: Path, build_dir: Path, tag: str, log: Callable[[str], None]) -> None:
        pip_cache = self._cache_dir / "pip"
        pip_cache.mkdir(parents=True, exist_ok=True)
        volumes = container_pip_mounts(self._pip_index, build_dir / "pip")
        volumes.append(f"{pip_cache}:/root/.cache/pip")
        # --force-rm: a failed step leaves no working container behind.
        command = [*self._buildah, "bud", "--isolation", "chroot", "--layers", "--force-rm"]
        for volume in volumes:
            command += ["-v", volume]
        command += ["-f", str(context / "Containerfile"), "-t", tag, str(context)]
        step = ["(before the first step)"]

        def track(line: str) -> None:
            if _STEP.match(line):
                step[0] = line

        home = build_dir / "home"
        home.mkdir()
        run = run_streaming(
            command, env=tool_env(home), log=log, timeout_s=self._timeout_s, on_line=track
        )
        if run.timed_out:
            raise BuildError(f"image build ran past {self._timeout_s:.0f}s at {step[0]}", run.tail)
        if run.returncode != 0:
            message = f"image build failed at {step[0]} (exit {run.returncode}): {run.last_line}"
            raise BuildError(message, run.tail)

    def _push(
        self, tag: str, request: ImageRequest, build_dir: Path, log: Callable[[str], None]
    ) -> str:
        digest_file = build_dir / "digest"
        destination = f"{self.registry}/{request.repository}:{request.deployment_id}"
        log(f"pushing {destination}")
        command = [
            *self._buildah, "push", f"--tls-verify={str(self._tls_verify).lower()}",
            "--digestfile", str(digest_file), tag, f"docker://{destination}",
        ]  # fmt: skip
        run = run_streaming(
            command, env=tool_env(build_dir / "home"), log=log, timeout_s=self._timeout_s
        )
        if run.returncode != 0 or run.timed_out:
            raise BuildError(f"image push to {self.registry} failed: {run.last_line}", run.tail)
        digest = digest_file.read_text().strip()
        if not _DIGEST.match(digest):
            raise BuildError(f"image push gave no digest (got {digest!r})", run.tail)
        reference = f"{self.registry}/{request.repository}@{digest}"
        log(f"image {reference}")
        return reference
