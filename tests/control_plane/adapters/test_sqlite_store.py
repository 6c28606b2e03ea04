"""SQLite-specific behaviour of SqliteMetadataStore: processes racing, persistence."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from control_plane.adapters.exceptions import NotSerializable
from control_plane.adapters.sqlite_store import SqliteMetadataStore

# Each child waits for the "go" file, then does INCREMENTS read-modify-write increments of
# one counter with conditional puts, retrying on conflict, and prints every version it won.
_RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from control_plane.adapters.sqlite_store import SqliteMetadataStore
    from control_plane.ports.store import VersionConflict

    db, go, increments = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    store = SqliteMetadataStore(db)
    store.get("race", "counter")
    Path(sys.argv[4]).touch()  # ready: imported and connected
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.005)
    won, conflicts = [], 0
    while len(won) < increments and time.monotonic() < deadline:
        item = store.get("race", "counter")
        time.sleep(0.001)  # widen the read-to-write window so the processes collide
        try:
            won.append(store.put("race", "counter", {"n": item.value["n"] + 1},
                                 expected_version=item.version))
        except VersionConflict:
            conflicts += 1
    store.close()
    print(json.dumps({"won": won, "conflicts": conflicts}))
    """
)


@pytest.mark.integration
def test_two_processes_racing_conditional_puts_have_one_winner_per_version(
    tmp_path: Path,
) -> None:
    db = tmp_path / "plinth.db"
    go = tmp_path / "go"
    increments = 200
    readies = [tmp_path / "ready-a", tmp_path / "ready-b"]
    store = SqliteMetadataStore(db)
    store.put("race", "counter", {"n": 0})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(db), str(go), str(increments), str(ready)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for ready in readies
    ]
    _wait_for_files(readies, timeout_s=30)
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    won = [v for r in results for v in r["won"]]
    # Every version 2..2N+1 was produced by exactly one conditional put, none twice.
    assert sorted(won) == list(range(2, 2 * increments + 2))
    item = store.get("race", "counter")
    assert item is not None
    assert item.value == {"n": 2 * increments}
    assert item.version == 2 * increments + 1
    # The processes did overlap (otherwise this test proves nothing).
    assert sum(r["conflicts"] for r in results) > 0
    store.close()


def _wait_for_files(paths: list[Path], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"children never became ready: {paths}"
        time.sleep(0.01)


def test_data_survives_reopen_and_file_is_wal(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "plinth.db"
    store = SqliteMetadataStore(db)
    store.put("models", "m1", {"name": "hello"})
    store.close()
    reopened = SqliteMetadataStore(db)
    item = reopened.get("models", "m1")
    assert item is not None and item.value == {"name": "hello"}
    mode = reopened._conns.get().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened.close()


def test_bad_values_name_table_and_key(tmp_path: Path) -> None:
    store = SqliteMetadataStore(tmp_path / "db")
    with pytest.raises(NotSerializable, match="models/m1"):
        store.put("models", "m1", {"x": float("nan")})
    with pytest.raises(NotSerializable, match="expected a dict"):
        store.put("models", "m1", ["not", "a", "dict"])  # type: ignore[arg-type]
    store.close()


def test_closed_store_refuses_new_threads(tmp_path: Path) -> None:
    import threading

    store = SqliteMetadataStore(tmp_path / "db")
    store.close()
    errors: list[BaseException] = []

    def use() -> None:
        try:
            store.get("t", "k")
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=use)
    t.start()
    t.join(timeout=10)
    assert len(errors) == 1 and "closed" in str(errors[0])
