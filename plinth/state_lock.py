"""One `plinth up` per state directory: an flock on `<state_dir>/up.lock`.

Two instances on one state dir fight over cli.json and each other's replicas, so the second
refuses at once, naming the first. The lock file also records the holder's pid, URLs and its
child processes. The kernel releases an flock when its holder dies, even by SIGKILL, so a
lock that can be taken while the file still names a holder is stale: its control plane and
gateway may have outlived it, and are stopped before the new instance starts (they hold the
ports and would keep driving the same replicas).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from plinth.exceptions import PlinthError

LOCK_FILENAME = "up.lock"
_READ_RETRIES = 10  # the holder may be between truncate and write
_LEFTOVER_STOP_S = 15.0


class StateDirBusyError(PlinthError):
    """Another `plinth up` holds the state directory."""


@dataclass
class StateDirLock:
    """The held lock; `record` publishes what this instance runs, `release` lets go."""

    path: Path
    fd: int

    def record(self, control_plane_url: str, gateway_url: str, children: list[int]) -> None:
        body = {
            "pid": os.getpid(),
            "control_plane_url": control_plane_url,
            "gateway_url": gateway_url,
            "children": [_identity(pid) for pid in children],
        }
        data = json.dumps(body).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd < 0:
            return
        os.ftruncate(self.fd, 0)  # a released lock names no holder
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = -1


def acquire_state_dir_lock(state_dir: Path, control_plane_url: str) -> StateDirLock:
    """Take the lock or raise StateDirBusyError; stop what a killed holder left running."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise StateDirBusyError(_busy_message(state_dir, _read_holder(path))) from exc
    lock = StateDirLock(path, fd)
    try:
        stale = _read_holder(path)
        if stale:
            _stop_leftovers(stale)
        lock.record(control_plane_url, "", [])
    except BaseException:
        lock.release()
        raise
    return lock


def _busy_message(state_dir: Path, holder: dict[str, Any]) -> str:
    pid = holder.get("pid", "unknown")
    url = holder.get("control_plane_url") or "unknown"
    return (
        f"plinth up is already running (pid {pid}, control plane URL {url}) on state dir"
        f" {state_dir}; stop it first, or give another --state-dir"
    )


def _read_holder(path: Path) -> dict[str, Any]:
    for _ in range(_READ_RETRIES):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            return {}
        if not text:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            time.sleep(0.05)
            continue
        return data if isinstance(data, dict) else {}
    return {}


def _identity(pid: int) -> dict[str, Any]:
    """pid plus start time, so a leftover is never confused with a later process reusing it."""
    try:
        return {"pid": pid, "create_time": psutil.Process(pid).create_time()}
    except psutil.NoSuchProcess:
        return {"pid": pid, "create_time": None}


def _stop_leftovers(stale: dict[str, Any]) -> None:
    alive = []
    for child in stale.get("children", []):
        try:
            proc = psutil.Process(int(child["pid"]))
            if proc.create_time() == child.get("create_time"):
                alive.append(proc)
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    for proc in alive:
        proc.terminate()  # SIGTERM: the control plane stops its replicas first
    _gone, still = psutil.wait_procs(alive, timeout=_LEFTOVER_STOP_S)
    for proc in still:
        proc.kill()
    psutil.wait_procs(still, timeout=5)
