"""SQLite-specific behaviour of SqliteQueue: fake clock, shared file, processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from control_plane.adapters.sqlite_queue import SqliteQueue
from control_plane.adapters.sqlite_store import SqliteMetadataStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_visibility_and_delay_follow_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    q = SqliteQueue(tmp_path / "db", clock=clock)
    q.send("q", "delayed", delay_s=10)
    q.send("q", "now")
    [msg] = q.receive("q", max_messages=5, visibility_timeout_s=5)
    assert msg.body == "now"
    clock.now += 4.9
    assert q.receive("q") == []
    clock.now += 0.2
    [again] = q.receive("q", max_messages=5, visibility_timeout_s=60)
    assert (again.body, again.receive_count) == ("now", 2)
    clock.now = 1010.0
    [later] = q.receive("q", max_messages=5)
    assert (later.body, later.receive_count) == ("delayed", 1)
    q.close()


def test_zero_visibility_timeout_does_not_redeliver_within_one_call(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "db", max_receives=3)
    q.send("q", "x")
    got = q.receive("q", max_messages=10, visibility_timeout_s=0)
    assert [m.receive_count for m in got] == [1]
    assert q.depth("q") == 1
    q.close()


def test_dlq_messages_stay_in_dlq(tmp_path: Path) -> None:
    q = SqliteQueue(tmp_path / "db", max_receives=1)
    q.send("q", "bad")
    q.receive("q", visibility_timeout_s=0)
    assert q.receive("q") == []
    assert (q.depth("q"), q.depth("q-dlq")) == (0, 1)
    for _ in range(3):  # the DLQ itself has no DLQ
        [msg] = q.receive("q-dlq", visibility_timeout_s=0)
    assert msg.receive_count == 3 and q.depth("q-dlq-dlq") == 0
    q.close()


def test_queue_and_store_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "plinth.db"
    store = SqliteMetadataStore(db)
    q = SqliteQueue(db)
    store.put("t", "k", {"a": 1})
    q.send("q", "body")
    assert [m.body for m in q.receive("q")] == ["body"]
    item = store.get("t", "k")
    assert item is not None and item.value == {"a": 1}
    q.close()
    store.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_messages": 0}, "max_messages"),
        ({"visibility_timeout_s": -1}, "visibility_timeout_s"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, kwargs: dict[str, float], field: str) -> None:
    q = SqliteQueue(tmp_path / "db")
    with pytest.raises(ValueError, match=field):
        q.receive("q", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay_s"):
        q.send("q", "x", delay_s=-1)
    with pytest.raises(ValueError, match="queue name"):
        q.send("", "x")
    q.close()
    with pytest.raises(ValueError, match="max_receives"):
        SqliteQueue(tmp_path / "db2", max_receives=0)


_CONSUMER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from control_plane.adapters.sqlite_queue import SqliteQueue

    q = SqliteQueue(Path(sys.argv[1]))
    seen, idle_until = [], time.monotonic() + 3
    while time.monotonic() < idle_until:
        got = q.receive("jobs", max_messages=4, visibility_timeout_s=120)
        if not got:
            time.sleep(0.01)
            continue
        idle_until = time.monotonic() + 1
        for m in got:
            seen.append(m.body)
            q.ack("jobs", m.receipt)
    q.close()
    print(json.dumps(seen))
    """
)


@pytest.mark.integration
def test_two_processes_consume_each_message_once(tmp_path: Path) -> None:
    db = tmp_path / "plinth.db"
    q = SqliteQueue(db)
    total = 150
    for i in range(total):
        q.send("jobs", str(i))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONSUMER, str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    seen: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        seen.extend(json.loads(out))
    assert sorted(seen, key=int) == [str(i) for i in range(total)]
    assert q.depth("jobs") == 0
    q.close()
