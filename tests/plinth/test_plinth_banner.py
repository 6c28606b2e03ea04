"""The `plinth up` banner never breaks a URL, however narrow the terminal."""

from __future__ import annotations

import io
from pathlib import Path

from plinth.local import LocalEndpoints, banner_console, print_banner


def test_banner_urls_stay_whole_in_a_narrow_terminal() -> None:
    out = io.StringIO()
    console = banner_console(file=out, width=30, color_system=None)
    cp = "http://127.0.0.1:28800"
    ep = LocalEndpoints(cp, "http://127.0.0.1:28801", "pl_" + "k" * 40, "int_x")
    print_banner(console, Path("/tmp/state"), ep)
    lines = out.getvalue().splitlines()
    assert any(f"{cp}/docs" in line for line in lines)
    assert any("pl_" + "k" * 40 in line for line in lines)


def test_banner_names_the_registry_of_the_container_runtime() -> None:
    out = io.StringIO()
    ep = LocalEndpoints("http://127.0.0.1:1", "http://127.0.0.1:2", "pl_k", "int_x")
    print_banner(banner_console(file=out, color_system=None), Path("/s"), ep)
    assert "registry" not in out.getvalue()
    print_banner(
        banner_console(file=out, color_system=None), Path("/s"), ep, registry="127.0.0.1:8802"
    )
    assert "registry       127.0.0.1:8802" in out.getvalue()
