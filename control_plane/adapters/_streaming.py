"""Run a build tool as a subprocess, streaming its output lines to a build log."""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TAIL_LINES = 40


@dataclass
class StreamedRun:
    returncode: int
    timed_out: bool
    tail: list[str] = field(default_factory=list)

    @property
    def last_line(self) -> str:
        """The last line that says something (not buildah's own summary of the failure)."""
        noise = ("Error: building at STEP", "subprocess exited with status")
        lines = [t for t in self.tail if t.strip()]
        useful = [t for t in lines if not t.startswith(noise)]
        return (useful or lines or [""])[-1]


def run_streaming(
    command: list[str],
    *,
    env: dict[str, str],
    log: Callable[[str], None],
    timeout_s: float,
    cwd: Path | None = None,
    on_line: Callable[[str], None] | None = None,
) -> StreamedRun:
    """Run ``command`` to its end (killed after ``timeout_s``), every line to ``log``."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
    )
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(timeout_s, kill_on_timeout)
    watchdog.start()
    try:
        for raw in proc.stdout or ():
            line = raw.rstrip("\n")
            tail.append(line)
            log(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return StreamedRun(returncode, timed_out.is_set(), list(tail))
