"""The Plinth base image: Debian bookworm with Python 3.11, built once and cached by its inputs.

``mmdebstrap`` makes the root filesystem (about 20 s, Debian's own packages only), which is
imported into buildah's image storage under a tag that names a hash of the inputs. Every later
build (another deployment, another test, another ``plinth up`` on this machine) finds the tag
and skips the work; a lock makes concurrent first builds wait for one another.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from control_plane.adapters._streaming import run_streaming
from control_plane.adapters.build_cache import exclusive_lock
from control_plane.adapters.build_env import PROXY_VARIABLES, SYSTEM_PATH
from control_plane.adapters.exceptions import BuildError

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Bump when the way the base is made changes, so a stale cached base is not reused.
BASE_FORMAT = 1


def base_image_tag(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    inputs = json.dumps([BASE_FORMAT, suite, sorted(packages)]).encode()
    return f"localhost/plinth/base:{suite}-py311-{hashlib.sha256(inputs).hexdigest()[:12]}"


def tool_env(home: Path) -> dict[str, str]:
    """buildah / mmdebstrap run with this environment only (no platform secrets)."""
    env = {"PATH": SYSTEM_PATH, "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home)}
    env.update({name: os.environ[name] for name in PROXY_VARIABLES if name in os.environ})
    return env


def buildah_command(storage_root: Path | None) -> list[str]:
    """``buildah`` with its image storage under ``storage_root`` (None: the machine's own)."""
    if storage_root is None:
        return ["buildah"]
    return ["buildah", "--root", str(storage_root / "root"), "--runroot", str(storage_root / "run")]


def image_exists(reference: str, storage_root: Path | None = None) -> bool:
    done = subprocess.run(
        [*buildah_command(storage_root), "inspect", "--type", "image", reference],
        capture_output=True,
        env=tool_env(Path(tempfile.gettempdir())),
        check=False,
    )
    return done.returncode == 0


class PlinthBaseImage:
    """Makes (once) and names the base image; ``lock_dir`` is shared by all builders."""

    def __init__(
        self, lock_dir: Path, *, timeout_s: float = 900.0, storage_root: Path | None = None
    ) -> None:
        self._lock_dir = Path(lock_dir)
        self._timeout_s = timeout_s
        self._storage_root = storage_root
        self.reference = base_image_tag()

    def ensure(self, log: Callable[[str], None]) -> str:
        """The base image's reference, building it first if this machine has none."""
        if image_exists(self.reference, self._storage_root):
            return self.reference
        lock = self._lock_dir / "plinth-base.lock"
        with exclusive_lock(lock, timeout_s=self._timeout_s + 60):
            if image_exists(self.reference, self._storage_root):
                return self.reference
            with tempfile.TemporaryDirectory(prefix="plinth-base-") as tmp:
                self._build(Path(tmp), log)
        return self.reference

    def _build(self, tmp: Path, log: Callable[[str], None]) -> None:
        rootfs = tmp / "rootfs.tar"
        env = tool_env(tmp)
        log(f"building the Plinth base image {self.reference} (mmdebstrap {SUITE})")
        include = ",".join(PACKAGES)
        name = f"plinth-base-{os.getpid()}"
        buildah = buildah_command(self._storage_root)
        config = ["--env", f"PATH={SYSTEM_PATH}", "--env", "LANG=C.UTF-8"]
        steps = [
            ["mmdebstrap", "--variant=apt", f"--include={include}", SUITE, str(rootfs)],
            [*buildah, "from", "--name", name, "scratch"],
            [*buildah, "add", name, str(rootfs), "/"],
            [*buildah, "config", *config, name],
            [*buildah, "commit", "--rm", name, self.reference],
        ]
        try:
            for step in steps:
                run = run_streaming(step, env=env, log=log, timeout_s=self._timeout_s)
                if run.returncode != 0 or run.timed_out:
                    why = "timed out" if run.timed_out else f"exit {run.returncode}"
                    what = " ".join(a for a in step[:4] if not a.startswith("/"))
                    raise BuildError(f"base image: {what} failed ({why})", run.tail)
        finally:
            subprocess.run(
                [*buildah, "rm", name],
                capture_output=True,
                env=env,
                check=False,
            )
