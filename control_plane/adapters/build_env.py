"""The environment a build runs in: explicit and minimal, never the control plane's own.

A build runs the user's code (``setup.py`` of every requirement, ``build_commands``) with
whatever environment it is given. The control plane's holds ``PLINTH_BOOTSTRAP_API_KEY``,
``PLINTH_INTERNAL_TOKEN`` and maybe cloud credentials, so builds get a fresh environment:
a fixed ``PATH``, ``HOME`` in a throw-away directory, a UTF-8 locale, and the package index
settings the host's pip uses, passed explicitly (the ``PIP_*`` index variables that are set
and the host's pip config files merged into one file under the build's ``HOME``), so a
package resolves from the same index here as it would for the operator's own pip.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Index and transport settings only: where packages come from and how to reach it.
PIP_INDEX_VARIABLES = (
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_FIND_LINKS", "PIP_NO_INDEX",
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_PROXY",
    "PIP_ONLY_BINARY", "PIP_PREFER_BINARY",
)  # fmt: skip
# Reaching the index through a proxy is the host's network setting, not a credential.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class PipIndexSettings:
    """The host's package index configuration: ``PIP_*`` variables and merged config text."""

    variables: dict[str, str]
    config_text: str

    @classmethod
    def from_host(
        cls, environ: Mapping[str, str] | None = None, *, home: Path | None = None
    ) -> PipIndexSettings:
        env = os.environ if environ is None else environ
        variables = {
            name: env[name] for name in PIP_INDEX_VARIABLES + PROXY_VARIABLES if name in env
        }
        user_home = home or Path(env.get("HOME") or Path.home())
        return cls(variables, _merged_pip_config(_pip_config_files(env, user_home)))

    def find_links_dirs(self) -> list[Path]:
        """Local directories the settings point pip at (find-links, file:// indexes)."""
        values = [self.variables.get(name, "") for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL")]
        values.append(self.variables.get("PIP_EXTRA_INDEX_URL", ""))
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(self.config_text)
        for section in parser.sections():
            for key in ("find-links", "index-url", "extra-index-url"):
                values.append(parser.get(section, key, fallback=""))
        dirs: list[Path] = []
        for value in values:
            for item in value.split():
                path = (
                    Path(item.removeprefix("file://"))
                    if item.startswith(("/", "file://"))
                    else None
                )
                if path is not None and path.is_dir() and path not in dirs:
                    dirs.append(path)
        return dirs


def clean_build_env(
    home: Path, pip: PipIndexSettings, *, extra_path: Iterable[Path] = ()
) -> dict[str, str]:
    """The whole environment of a build step; writes the pip config under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.pathsep.join([*(str(p) for p in extra_path), SYSTEM_PATH]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(home),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **pip.variables,
    }
    if pip.config_text:
        config = home / "pip.conf"
        config.write_text(pip.config_text)
        env["PIP_CONFIG_FILE"] = str(config)
    return env


def _pip_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's config files in its own order (later wins): global, user, site, then the file
    ``PIP_CONFIG_FILE`` names."""
    xdg_dirs = env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep)
    xdg_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs if d]
    files += [Path("/etc/pip.conf"), home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    files.append(Path(sys.prefix) / "pip.conf")
    if env.get("PIP_CONFIG_FILE") and env["PIP_CONFIG_FILE"] != os.devnull:
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return [f for f in files if f.is_file()]


def _merged_pip_config(files: list[Path]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    for file in files:
        try:
            parser.read(file)
        except (configparser.Error, OSError):
            continue  # pip would refuse it too; the build then reports pip's own error
    lines: list[str] = []
    for section in parser.sections():
        lines.append(f"[{section}]")
        # Multi-line values (several extra-index-urls) keep their continuation indent.
        lines += [
            f"{key} = {value.replace(chr(10), chr(10) + '    ')}"
            for key, value in parser.items(section)
        ]
    return "\n".join(lines) + ("\n" if lines else "")


# Where a build container finds the host's pip settings (bind-mounted, never baked in a layer).
CONTAINER_PIP_CONF = "/etc/pip.conf"
CONTAINER_PIP_FILES = "/etc/plinth-pip"


def container_pip_mounts(pip: PipIndexSettings, work_dir: Path) -> list[str]:
    """``buildah bud -v`` values that give RUN steps the host's index settings: one pip.conf
    (the ``PIP_*`` variables folded in; files it names, such as a CA bundle or a constraints
    file, mounted read-only and the paths rewritten) and each local find-links / file://
    index directory read-only at its own path."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(pip.config_text)
    if not parser.has_section("global"):
        parser.add_section("global")
    for name, value in pip.variables.items():
        if name.startswith("PIP_"):
            parser.set("global", name.removeprefix("PIP_").lower().replace("_", "-"), value)
    mounts: dict[Path, str] = {}
    for section in parser.sections():
        for key, value in parser.items(section):
            items = value.split()
            if items and all(Path(item).is_file() for item in items):
                inside = []
                for item in items:
                    host = Path(item).resolve()
                    target = mounts.setdefault(
                        host, f"{CONTAINER_PIP_FILES}/{len(mounts)}-{host.name}"
                    )
                    inside.append(target)
                parser.set(section, key, "\n".join(inside))
    conf = work_dir / "pip.conf"
    work_dir.mkdir(parents=True, exist_ok=True)
    with conf.open("w") as out:
        parser.write(out)
    volumes = [f"{host}:{target}:ro" for host, target in mounts.items()]
    volumes.append(f"{conf}:{CONTAINER_PIP_CONF}:ro")
    rewritten = PipIndexSettings({}, conf.read_text())
    for found in rewritten.find_links_dirs():
        # A file:// "simple" index links to files beside it (../files/...): mount its parent.
        directory = found.parent if found.name == "simple" else found
        if f"{directory}:{directory}:ro" not in volumes:
            volumes.append(f"{directory}:{directory}:ro")
    return volumes
