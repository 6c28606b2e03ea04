"""bench/gateway.py runs end to end on tiny sizes (a real replica and gateways as subprocesses),
with a second gateway from another checkout (this same tree here) in the same rounds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_gateway_bench_on_tiny_sizes() -> None:
    args = ["--requests", "40", "--latency-requests", "10", "--rounds", "2"]
    done = subprocess.run(
        [sys.executable, "bench/gateway.py", *args, "--compare-gateway", str(ROOT)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr  # 0: no request failed
    tables = done.stdout.split("\nN=")[1:]
    assert [t.splitlines()[0] for t in tables] == [
        "40 C=8, median of 2 round(s)",
        "10 C=1, median of 2 round(s)",
    ]
    for table in tables:
        rows = {line[:34].strip(): line[34:].split() for line in table.splitlines()[2:]}
        assert set(rows) == {"replica (baseline)", "gateway (this tree)", f"gateway ({ROOT})"[:33]}
        assert rows["replica (baseline)"][3] == "1.00x"
        for name, cells in rows.items():
            assert float(cells[0]) > 0  # req/s
            # The gateway's CPU per request is measured for gateways (clock ticks of 10 ms: a
            # tiny run may read 0) and not for the replica-direct row.
            assert (cells[5] == "nan") == (name == "replica (baseline)")
