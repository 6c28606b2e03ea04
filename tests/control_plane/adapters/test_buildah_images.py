"""BuildahImageBuilder: real images built with buildah, pushed to a loopback registry, pulled
back by digest and run. The base image is built at most once per machine (see
tests/support/images.py); with it cached, this file takes about a minute on 2 cores."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.adapters.buildah_images import BuildahImageBuilder
from control_plane.adapters.exceptions import BuildError
from control_plane.ports.images import ImageRequest
from tests.support.images import (
    local_registry,
    missing_image_tools,
    run_in_image,
    shared_image_cache,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(missing_image_tools()), reason="buildah/mmdebstrap/registry missing"),
]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
DUMP_ENV = "'import json, os; print(json.dumps(dict(os.environ)))'"
SECRETS = {"PLINTH_BOOTSTRAP_API_KEY": "pk-secret", "AWS_SECRET_ACCESS_KEY": "aws-secret"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def _builder(registry: str, tmp_path: Path) -> BuildahImageBuilder:
    return BuildahImageBuilder(registry, tmp_path / "builds", shared_image_cache())


def _build(
    builder: BuildahImageBuilder, request: ImageRequest, tmp_path: Path
) -> tuple[str, list[str]]:
    lines: list[str] = []
    work = tmp_path / "work" / request.deployment_id
    work.mkdir(parents=True)
    context = builder.prepare_context(request, work)
    return builder.build_and_push(context, request, lines.append), lines


def test_image_is_built_in_layers_pushed_by_digest_and_runs_its_model_server(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    package = tmp_path / "hello"
    shutil.copytree(EXAMPLES / "hello", package)
    request = ImageRequest(
        "dep1aaaa",
        "modimage",
        package,
        system_packages=["jq"],
        requirements=["tabulate==0.10.0"],
        build_commands=[f"python3 -c {DUMP_ENV} > /env.json"],
    )
    builder = _builder(registry, tmp_path)
    started = time.monotonic()
    reference, lines = _build(builder, request, tmp_path)
    first_s = time.monotonic() - started
    assert re.fullmatch(rf"{registry}/plinth/models/modimage@sha256:[0-9a-f]{{64}}", reference)
    # Pulled back by digest: the steps' effects are in the image, no secret reached a step.
    seen = json.loads(run_in_image(reference, "cat", "/env.json").stdout)
    assert not [k for k in seen if k.startswith(("PLINTH_", "AWS_", "GOOGLE_"))], seen
    assert run_in_image(reference, "jq", "--version").stdout.startswith("jq-")
    code = "import tabulate, gpu_nodes.model_server.__main__; print(tabulate.__version__)"
    done = run_in_image(reference, "/opt/plinth/venv/bin/python", "-c", code)
    assert done.stdout.strip() == "0.10.0", done.stderr
    assert run_in_image(reference, "ls", "/opt/plinth/model/model").stdout.split() == ["model.py"]
    assert any("STEP" in line for line in lines)

    # Same base, apt packages and requirements, new model code: those layers are reused.
    (package / "model" / "model.py").write_text(
        (package / "model" / "model.py").read_text() + "\n# v2\n"
    )
    second = ImageRequest(**{**request.__dict__, "deployment_id": "dep2aaaa"})
    started = time.monotonic()
    reference2, lines2 = _build(builder, second, tmp_path)
    second_s = time.monotonic() - started
    assert reference2 != reference
    cached = [line for line in lines2 if line.startswith("--> Using cache")]
    assert len(cached) >= 5, lines2  # venv, apt, requirements (COPY + RUN), build command
    assert second_s < first_s or first_s < 30, (first_s, second_s)


def test_failing_step_names_the_step_and_its_output(registry: str, tmp_path: Path) -> None:
    request = ImageRequest(
        "dep3aaaa",
        "modimage",
        EXAMPLES / "hello",
        build_commands=["echo about to fail; echo nope >&2; exit 7"],
    )
    with pytest.raises(BuildError) as info:
        _build(_builder(registry, tmp_path), request, tmp_path)
    message = str(info.value)
    assert "STEP 3/" in message and "exit 7" in message, message
    assert "nope" in "\n".join(info.value.output_tail)
