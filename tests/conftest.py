"""Suite-wide set-up: the tests never read or write the user's own Plinth config."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # `plinth up` registers itself as the remote `local` in the user config; point that file
    # (for this process and every CLI / platform process a test starts) at a scratch place.
    scratch = Path(tempfile.mkdtemp(prefix="plinth-user-config-"))
    os.environ["PLINTH_CONFIG"] = str(scratch / "config.json")
    os.environ.pop("PLINTH_REMOTE", None)
