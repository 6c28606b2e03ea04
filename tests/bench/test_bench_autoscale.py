"""bench/autoscale.py runs end to end as a subprocess: tiny synthetic traces and a CSV trace."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "autoscale.py"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(BENCH), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_quick_synthetic_traces_print_every_policy() -> None:
    done = run_bench("--quick")
    assert done.returncode == 0, done.stderr
    for trace in ("diurnal", "bursty", "spike"):
        assert f"\n{trace}: " in done.stdout
    for policy in (
        "plinth",
        "plinth no-panic",
        "plinth queue-len",
        "plinth 60 s/900 s",
        "kpa",
        "oracle",
    ):
        rows = re.findall(rf"^{re.escape(policy)} {{2,}}\d", done.stdout, re.MULTILINE)
        assert len(rows) == 3, policy
    assert done.stdout.count("target (plinth <= 1.2x oracle GPU-s") == 3


def test_csv_trace_with_token_counts(tmp_path: Path) -> None:
    trace = tmp_path / "prod.csv"
    rows = ["timestamp,input_tokens,output_tokens"]
    rows += [f"{1_700_000_000 + i * 0.5},{100 + i},{20 + i % 7}" for i in range(400)]
    trace.write_text("\n".join(rows) + "\n")
    done = run_bench("--trace", str(trace), "--cold-start", "5")
    assert done.returncode == 0, done.stderr
    assert "prod.csv: 400 requests" in done.stdout
    oracle_row = next(line for line in done.stdout.splitlines() if line.startswith("oracle"))
    # Service time from tokens: 0.2 ms x ~300 input + 20 ms x ~23 output, about 0.5 s.
    p50 = float(oracle_row.split()[3])
    assert 0.4 < p50 < 0.7


def test_csv_trace_with_a_bad_timestamp_names_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp\n1.0\nyesterday\n")
    done = run_bench("--trace", str(trace))
    assert done.returncode != 0
    assert "bad.csv:3: timestamp 'yesterday'" in done.stderr
