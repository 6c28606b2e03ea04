"""The README and every example README, run as written against a running `plinth up`.

Every ```bash block of a document runs, in order, in one bash script (`set -euo pipefail`, so
any failing command fails the test), and every ```python block runs in between with the
platform's Python. Blocks without a language (`plinth up` itself, `make demo`) are not run: the
platform of this module stands in for `plinth up`. The documents use the default ports; the
test points them at this platform's ports, and nothing else is changed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from plinth.local import LocalPlatform

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SCRIPT_TIMEOUT_S = 600

# What each document's commands must print (beyond exiting 0), so a command that "succeeds"
# with the wrong answer fails the test too.
DOCUMENTS = {
    "README.md": ['"output": "echo: hi"', "rolling production back to"],
    "examples/hello/README.md": ['"doubled": 6'],
    "examples/streaming/README.md": ["chunk 0 chunk 1 chunk 2 chunk 3 chunk 4"],
    "examples/with-requirements/README.md": ["ada"],
    "examples/with-weights/README.md": ["hello from the weights"],
    "examples/tiny-llm/README.md": ["OpenAI base_url (production)"],
    "examples/openai-methods/README.md": ["echo: hi", "streamed: echo: hi"],
}


def document_script(text: str) -> str:
    """One bash script from a document's ```bash and ```python blocks, in document order."""
    # The ERR trap names the command that failed (its text, not its expanded arguments).
    parts = [
        "set -euo pipefail",
        "trap 'echo \"README command failed ($?): $BASH_COMMAND\" >&2' ERR",
    ]
    for language, body in FENCE.findall(text):
        if language == "bash":
            parts.append(body)
        elif language == "python":
            parts.append(f"python - <<'PLINTH_DOC_PYTHON'\n{body}PLINTH_DOC_PYTHON")
    return "\n".join(parts) + "\n"


def point_at(script: str, platform: LocalPlatform) -> str:
    """The documents' default ports (8800 control plane, 8801 gateway) -> this platform's."""
    for default, url in (
        ("8800", platform.endpoints.control_plane_url),
        ("8801", platform.endpoints.gateway_url),
    ):
        netloc = urlsplit(url).netloc
        for host in ("127.0.0.1", "localhost"):
            script = script.replace(f"{host}:{default}", netloc)
    return script


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/ (generated weights left out), so the documents write only here."""
    root = tmp_path_factory.mktemp("docs")
    ignore = shutil.ignore_patterns("weights", "__pycache__")
    shutil.copytree(REPO_ROOT / "examples", root / "examples", ignore=ignore)
    return root


def test_every_readme_is_covered() -> None:
    found = {str(path.relative_to(REPO_ROOT)) for path in REPO_ROOT.glob("examples/*/README.md")}
    assert found | {"README.md"} == set(DOCUMENTS)


@pytest.mark.timeout(SCRIPT_TIMEOUT_S + 60)  # tiny-llm trains its weights first (CPU)
@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_document_runs_as_written(
    document: str, platform: LocalPlatform, workdir: Path, tmp_path: Path
) -> None:
    script = point_at(document_script((REPO_ROOT / document).read_text(encoding="utf-8")), platform)
    assert "plinth" in script, f"{document} has no runnable ```bash block"
    bin_dir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        PLINTH_STATE_DIR=str(platform.state_dir),
        PLINTH_API_KEY=platform.endpoints.api_key,
        PLINTH_CONFIG=str(tmp_path / "user-config.json"),
        PYTHONPATH=str(REPO_ROOT),
        NO_COLOR="1",
        COLUMNS="200",
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{document} failed:\n{output[-6000:]}"
    for expected in DOCUMENTS[document]:
        assert expected in output, f"{document}: {expected!r} not in\n{output[-6000:]}"
