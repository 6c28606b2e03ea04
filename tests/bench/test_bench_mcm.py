"""bench/mcm.py runs end to end on a tiny trace (the CLI as a subprocess)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rows(output: str) -> dict[str, list[str]]:
    """Table rows by strategy name; cells are split on runs of two or more spaces."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 9 and cells[0] != "strategy":
            rows[cells[0]] = cells
    return rows


def _percent(cell: str) -> float:
    return float(cell.rstrip(" %"))


def test_mcm_bench_on_a_tiny_trace() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "bench/mcm.py", "--days", "0.25", "--regions", "2", "--clusters", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = _rows(done.stdout)
    assert set(rows) == {"plinth placement", "single region (us-east)", "static even spread"}
    plinth, single, static = (
        rows["plinth placement"],
        rows["single region (us-east)"],
        rows["static even spread"],
    )
    # Across the outage window, failover beats both baselines from the same run.
    assert _percent(plinth[2]) > _percent(static[2]) > _percent(single[2])
    assert float(static[6]) == 1.0 and float(plinth[6]) <= 1.1  # GPU-hours vs static spread
    assert int(plinth[7]) > 0 and int(static[7]) == 0  # replicas moved: failover moved some
    assert "target availability" in done.stdout
