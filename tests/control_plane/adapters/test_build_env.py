"""Builds run in a clean environment: a requirement's setup.py sees no platform secret."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from control_plane.adapters.build_env import PipIndexSettings, clean_build_env
from control_plane.adapters.builder import EnvironmentBuilder

pytestmark = pytest.mark.integration

SECRETS = {
    "PLINTH_BOOTSTRAP_API_KEY": "pk-bootstrap-secret",
    "PLINTH_INTERNAL_TOKEN": "internal-secret",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
    "GOOGLE_APPLICATION_CREDENTIALS": "/secret/gcp.json",
}


def _env_dumping_package(root: Path, dump: Path) -> Path:
    """A local package whose setup.py writes every variable it sees to ``dump``."""
    package = root / "envdump"
    package.mkdir()
    (package / "setup.py").write_text(
        textwrap.dedent(
            f"""
            import json, os
            from setuptools import setup
            with open({str(dump)!r}, "w") as out:
                json.dump(dict(os.environ), out)
            setup(name="envdump", version="0.1", py_modules=[])
            """
        )
    )
    return package


def test_setup_py_of_a_requirement_sees_no_platform_secret_or_cloud_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    dump = tmp_path / "seen-env.json"
    package = _env_dumping_package(tmp_path, dump)
    lines: list[str] = []
    EnvironmentBuilder(tmp_path / "envs").build([str(package)], log=lines.append)
    seen = json.loads(dump.read_text())
    leaked = [name for name in seen if name.startswith(("PLINTH_", "AWS_", "GOOGLE_"))]
    assert leaked == [], leaked
    assert not set(SECRETS.values()) & set(seen.values())
    assert seen["HOME"] != str(Path.home()) and seen["LANG"] == "C.UTF-8"


def test_pip_index_settings_come_from_the_host_config_and_variables(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        f"[global]\nindex-url = https://mirror.example/simple\nfind-links = {tmp_path}\n"
        "extra-index-url =\n    https://a.example/simple\n    https://b.example/simple\n"
    )
    environ = {"HOME": str(home), "PIP_TRUSTED_HOST": "mirror.example", "PLINTH_X": "no"}
    settings = PipIndexSettings.from_host(environ)
    assert settings.variables == {"PIP_TRUSTED_HOST": "mirror.example"}
    assert "index-url = https://mirror.example/simple" in settings.config_text
    assert tmp_path in settings.find_links_dirs()
    env = clean_build_env(tmp_path / "build-home", settings)
    assert not [name for name in env if name.startswith("PLINTH_")]
    written = Path(env["PIP_CONFIG_FILE"]).read_text()
    assert "    https://b.example/simple" in written
    assert env["HOME"] == str(tmp_path / "build-home")
