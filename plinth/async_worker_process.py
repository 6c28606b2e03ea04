"""The async worker process of `plinth up`, restarted whenever it exits.

The worker holds no state of its own (messages and records are in the state dir), so a
restart after a crash or a SIGKILL only costs the visibility timeout of the messages it held.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

RESTART_DELAY_S = 0.5
STOP_GRACE_S = 15.0


class SupervisedWorker:
    def __init__(
        self, env: dict[str, str], log: Path, on_spawn: Callable[[int], None] | None = None
    ) -> None:
        self._env = env
        self._log = log
        # Told each new worker pid: `plinth up` records it in the state-dir lock, so a
        # successor that takes over from a SIGKILLed `plinth up` stops this worker too.
        self._on_spawn = on_spawn
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0
        self.proc = self._spawn()
        self._thread = threading.Thread(target=self._watch, name="async-worker-watch", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._log.parent.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as out:
            args = [sys.executable, "-m", "control_plane.async_worker"]
            proc = subprocess.Popen(args, env=self._env, stdout=out, stderr=subprocess.STDOUT)
        if self._on_spawn is not None:
            self._on_spawn(proc.pid)
        return proc

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self.proc.wait()
            if self._stopping.wait(RESTART_DELAY_S):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self.proc = self._spawn()
                    self.restarts += 1

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._thread.join(timeout=5)
