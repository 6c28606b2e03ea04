"""bench/async.py runs end to end on tiny sizes (a real plinth up, the script as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def test_async_bench_on_tiny_sizes() -> None:
    args = ["--enqueue", "20", "--backlog", "20", "--sync", "10", "--concurrency", "4"]
    done = subprocess.run(
        [sys.executable, "bench/async.py", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "end to end: 20/20 SUCCEEDED" in done.stdout, done.stdout
    assert "enqueue: 20 requests" in done.stdout
    assert "p99 ratio" in done.stdout
