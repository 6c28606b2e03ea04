"""EnvironmentBuilder: real pip installs from the machine's package mirror into real venvs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from control_plane.adapters.build_cache import normalise_requirements
from control_plane.adapters.builder import BuildError, BuiltEnvironment, EnvironmentBuilder

pytestmark = pytest.mark.integration

# Tiny pure-python package that the platform venv does not have.
TINY = "text-unidecode==1.3"


def _run(python: Path, code: str) -> str:
    # cwd=/ so nothing is importable by accident from the repo checkout.
    done = subprocess.run(
        [str(python), "-c", code], cwd="/", capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_build_installs_then_second_build_is_a_cache_hit(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs")
    lines: list[str] = []
    first = builder.build([TINY], log=lines.append)
    assert not first.cached
    assert first.venv_dir == tmp_path / "envs" / first.requirements_hash
    assert any("Successfully installed text-unidecode-1.3" in line for line in lines)
    where = _run(
        first.python,
        "import text_unidecode, fastapi, gpu_nodes; "
        "print(text_unidecode.__file__); print(text_unidecode.unidecode('héllo'))",
    )
    assert where.splitlines() == [
        str(first.venv_dir / "lib/python3.11/site-packages/text_unidecode/__init__.py"),
        "hello",
    ]
    second_lines: list[str] = []
    second = builder.build(["Text_Unidecode == 1.3", "# a comment"], log=second_lines.append)
    assert second == BuiltEnvironment(first.python, first.venv_dir, first.requirements_hash, True)
    assert len(second_lines) == 1 and "cached" in second_lines[0]


def test_user_requirement_shadows_platform_package(tmp_path: Path) -> None:
    platform_version = _run(Path(sys.executable), "import humanize; print(humanize.__version__)")
    assert platform_version != "4.9.0"
    built = EnvironmentBuilder(tmp_path / "envs").build(["humanize==4.9.0"], log=lambda _: None)
    assert _run(built.python, "import humanize; print(humanize.__version__)") == "4.9.0"
    # The platform's copy is untouched.
    assert (
        _run(Path(sys.executable), "import humanize; print(humanize.__version__)")
        == platform_version
    )


def test_failing_pip_raises_build_error_and_caches_nothing(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs")
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        builder.build(["plinth-no-such-package-zzz==1.0"], log=lines.append)
    tail = "\n".join(info.value.output_tail)
    assert "plinth-no-such-package-zzz" in tail
    assert "No matching distribution" in tail or "Could not find a version" in tail
    assert "pip install failed" in str(info.value)
    assert lines  # pip's output was streamed
    assert [p.name for p in (tmp_path / "envs").iterdir()] == [".locks"]
    assert builder.lookup(["plinth-no-such-package-zzz==1.0"]) is None


def _import_error(python: Path, module: str) -> str:
    # Without the PYTHONPATH the test run sets (it points at the checkout, as no replica's does).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [str(python), "-c", f"import {module}"]
    done = subprocess.run(command, cwd="/", capture_output=True, text=True, env=env)
    assert done.returncode != 0, f"{module} is importable in the model's environment"
    return done.stderr.strip().splitlines()[-1]


def test_no_requirements_gives_the_model_server_runtime_and_nothing_else(tmp_path: Path) -> None:
    built = EnvironmentBuilder(tmp_path / "envs").build([], log=lambda _: None)
    code = "import sys, uvicorn, fastapi, gpu_nodes.model_server.__main__; print(sys.prefix)"
    assert _run(built.python, code) == str(built.venv_dir)
    # The platform's other packages stay out: a forgotten requirement fails here, as on a cluster.
    for module in ("numpy", "torch", "requests", "boto3", "control_plane"):
        assert _import_error(built.python, module) == (
            f"ModuleNotFoundError: No module named '{module}'"
        )


def test_engine_packages_get_the_engine_runtime(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs")
    built = builder.build([], log=lambda _: None, engine=True)
    assert built.requirements_hash != builder.requirements_hash([])
    _run(built.python, "import torch, tokenizers, safetensors, gpu_nodes.openai")


def test_concurrent_builds_of_one_hash_build_once(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs")
    results: list[BuiltEnvironment] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(builder.build([TINY], log=lambda _: None))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(r.cached for r in results) == [False, True]
    assert len({r.venv_dir for r in results}) == 1
    _run(results[0].python, "import text_unidecode")


def test_half_built_entry_is_rebuilt(tmp_path: Path) -> None:
    builder = EnvironmentBuilder(tmp_path / "envs")
    digest = builder.requirements_hash([])
    leftover = tmp_path / "envs" / digest
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("from a build that died")
    built = builder.build([], log=lambda _: None)
    assert not built.cached and not (leftover / "junk").exists()
    assert built.python.exists()


def test_normalisation_and_hash_inputs(tmp_path: Path) -> None:
    assert normalise_requirements(
        [
            "Numpy >= 1.0",
            "numpy>=1.0",
            "  ",
            "# c",
            "requests  # why",
            "-e ./local",
            "x @ https://h/x.whl",
        ]
    ) == ["-e ./local", "numpy>=1.0", "requests", "x @ https://h/x.whl"]
    a = EnvironmentBuilder(tmp_path)
    assert a.requirements_hash(["x==1"]) == a.requirements_hash(["X==1", ""])
    assert a.requirements_hash(["x==1"]) != a.requirements_hash(["x==2"])
    assert a.requirements_hash(["x==1"]) != a.requirements_hash(["x==1"], engine=True)


def test_example_package_serves_from_its_built_environment(tmp_path: Path) -> None:
    """Builder + local driver: the model server runs in the venv and imports the requirement."""
    import httpx

    from control_plane.adapters.local_cluster import LocalProcessDriver
    from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec

    example = Path(__file__).resolve().parents[3] / "examples" / "with-requirements"
    built = EnvironmentBuilder(tmp_path / "envs").build(["tabulate==0.10.0"], log=lambda _: None)
    driver = LocalProcessDriver(tmp_path / "state", poll_interval_s=0.1, max_restarts=0)
    try:
        spec = ReplicaSpec("dep-tab", "m-tab", str(example), str(built.python))
        driver.scale(spec, 1)
        deadline = time.monotonic() + 60
        while (state := driver.replicas("dep-tab")[0]).phase is not ReplicaPhase.READY:
            assert state.phase is not ReplicaPhase.FAILED, driver.logs("dep-tab")
            assert time.monotonic() < deadline, driver.logs("dep-tab")
            time.sleep(0.1)
        answer = httpx.post(
            f"{state.url}/v1/models/model:predict", json={"rows": [["ada", 3]]}, timeout=10
        ).json()
        assert answer["tabulate_version"] == "0.10.0" and "ada" in answer["table"]
    finally:
        driver.close()
