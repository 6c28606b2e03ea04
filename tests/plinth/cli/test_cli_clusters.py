"""`plinth clusters ...` as a subprocess against the real control plane."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plinth.cli.clusters import parse_pairs
from plinth.exceptions import PlinthError

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cp_env(cli_env: dict[str, str], control_plane: Any) -> dict[str, str]:
    cli_env["PLINTH_URL"] = control_plane.url
    cli_env["PLINTH_API_KEY"] = control_plane.api_key
    return cli_env


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def failed(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_parse_pairs() -> None:
    assert parse_pairs(["H100=16", "cpu=0"], "--capacity", as_int=True) == {"H100": 16, "cpu": 0}
    assert parse_pairs(["residency=eu"], "--label") == {"residency": "eu"}
    with pytest.raises(PlinthError, match="--capacity 'H100': expected KEY=VALUE"):
        parse_pairs(["H100"], "--capacity", as_int=True)
    with pytest.raises(PlinthError, match="'many' is not a whole number"):
        parse_pairs(["H100=many"], "--capacity", as_int=True)


@pytest.mark.integration
def test_register_list_cordon_drain_remove(cp_env: dict[str, str], run_cli: RunCli) -> None:
    ok(
        run_cli(
            "clusters",
            "register",
            "cli-spill",
            "--cloud",
            "aws",
            "--region",
            "eu-west-1",
            "--latitude",
            "53.3",
            "--longitude",
            "-6.3",
            "--capacity",
            "H100=16",
        )
    )
    registered = ok(
        run_cli(
            "clusters",
            "register",
            "cli-dc",
            "--cloud",
            "acme",
            "--region",
            "eu-central",
            "--latitude",
            "50.1",
            "--longitude",
            "8.7",
            "--kind",
            "self-hosted",
            "--capacity",
            "H100=8",
            "--capacity",
            "cpu=4",
            "--max-gpus",
            "6",
            "--spill-over-to",
            "cli-spill",
            "--label",
            "residency=eu",
            "--json",
        )
    )
    record = json.loads(registered)
    assert record["capacity"] == {"H100": 8, "cpu": 4} and record["labels"] == {"residency": "eu"}
    assert record["spill_over_to"] == "cli-spill" and record["max_gpus"] == 6

    table = ok(run_cli("clusters", "list"))
    assert "cli-dc" in table and "acme/eu-central" in table and "H100=8, cpu=4 (max 6)" in table
    assert "residency=eu" in table and "schedulable" in table and "never" in table

    assert "cordoned" in ok(run_cli("clusters", "cordon", "cli-dc"))
    assert "cordoned" in ok(run_cli("clusters", "get", "cli-dc"))
    drained = json.loads(ok(run_cli("clusters", "drain", "cli-dc", "--json")))
    assert drained["health"]["draining"] is True and drained["health"]["cordoned"] is True
    assert "draining" in ok(run_cli("clusters", "list"))
    back = json.loads(ok(run_cli("clusters", "uncordon", "cli-dc", "--json")))
    assert back["health"]["cordoned"] is False and back["health"]["draining"] is False

    listed = json.loads(ok(run_cli("clusters", "list", "--json")))["clusters"]
    assert {"cli-dc", "cli-spill"} <= {item["id"] for item in listed}
    placements = json.loads(ok(run_cli("clusters", "placements", "--json")))
    assert set(placements) == {"placements", "cluster_health"}
    assert "placements" in ok(run_cli("clusters", "placements"))
    assert "removed" in ok(run_cli("clusters", "remove", "cli-dc"))
    assert "404 NOT_FOUND: cluster 'cli-dc' not found" in failed(
        run_cli("clusters", "get", "cli-dc")
    )


@pytest.mark.integration
def test_register_from_a_file_and_errors_are_one_line(
    cp_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    ok(
        run_cli(
            "clusters",
            "register",
            "cli-file-src",
            "--cloud",
            "gcp",
            "--region",
            "us-central1",
            "--latitude",
            "41.2",
            "--longitude",
            "-95.9",
        )
    )
    exported = json.loads(ok(run_cli("clusters", "get", "cli-file-src", "--json")))
    source = tmp_path / "cluster.json"
    source.write_text(json.dumps(exported), encoding="utf-8")  # health included: it is dropped
    copied = json.loads(
        ok(
            run_cli(
                "clusters",
                "register",
                "cli-file-copy",
                "--file",
                str(source),
                "--priority",
                "5",
                "--json",
            )
        )
    )
    assert copied["region"] == "us-central1" and copied["priority"] == 5

    missing = failed(run_cli("clusters", "register", "cli-bad", "--cloud", "aws"))
    assert "422 VALIDATION" in missing and "region" in missing and "location" in missing
    half = failed(run_cli("clusters", "register", "cli-bad", "--latitude", "1"))
    assert "give both --latitude and --longitude" in half
    spill = failed(
        run_cli(
            "clusters", "register", "cli-bad", "--file", str(source), "--spill-over-to", "nowhere"
        )
    )
    assert "404 NOT_FOUND" in spill and "'nowhere' is not a registered cluster" in spill
    not_json = tmp_path / "bad.json"
    not_json.write_text("{", encoding="utf-8")
    assert "is not JSON" in failed(run_cli("clusters", "register", "x", "--file", str(not_json)))
