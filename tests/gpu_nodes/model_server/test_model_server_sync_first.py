"""Sync first on a real replica: a call marked as async work gets a slot only when one is free
of sync traffic (none held, none waited for); otherwise 429 at once, never queued."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from plinth.contracts.async_work import ASYNC_WORK_HEADER, REPLICA_BUSY_HEADER

pytestmark = pytest.mark.integration

HOLDING_MODEL = """
import json
import time
from pathlib import Path

class Model:
    def __init__(self, config):
        meta = config["model_metadata"]
        self._events = Path(meta["events_file"])
        self._release = Path(meta["release_file"])

    def preprocess(self, model_input):
        with self._events.open("a") as f:
            f.write(json.dumps({"kind": "pre", "tag": model_input["tag"]}) + "\\n")
        return model_input

    def predict(self, model_input):
        deadline = time.monotonic() + 20
        while not self._release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"tag": model_input["tag"]}
"""
ASYNC = {ASYNC_WORK_HEADER: "1"}


def _tags_preprocessed(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["tag"] for line in path.read_text().splitlines() if line]


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError("condition not met in time")


def test_async_work_is_refused_while_sync_holds_or_waits_for_the_slot(serve, tmp_path) -> None:
    events_file, release_file = tmp_path / "events.jsonl", tmp_path / "release"
    config = {
        "model_name": "holder",
        "runtime": {"predict_concurrency": 1},
        "model_metadata": {"events_file": str(events_file), "release_file": str(release_file)},
    }
    url = f"{serve(HOLDING_MODEL, config).url}/v1/models/model:predict"
    with ThreadPoolExecutor(max_workers=2) as pool:
        holder = pool.submit(httpx.post, url, json={"tag": "sync-1"}, timeout=30)
        _wait_for(lambda: _tags_preprocessed(events_file) == ["sync-1"])
        time.sleep(0.2)  # sync-1 is inside predict, holding the one slot
        refused = httpx.post(url, json={"tag": "async-1"}, headers=ASYNC, timeout=5)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.headers[REPLICA_BUSY_HEADER] == "1"
        # A second sync call queues for the slot as always ...
        waiter = pool.submit(httpx.post, url, json={"tag": "sync-2"}, timeout=30)
        _wait_for(lambda: "sync-2" in _tags_preprocessed(events_file))
        # ... and async work is refused while it waits, before preprocess ever runs.
        assert httpx.post(url, json={"tag": "async-2"}, headers=ASYNC).status_code == 429
        assert "async-1" not in _tags_preprocessed(events_file)
        assert "async-2" not in _tags_preprocessed(events_file)
        release_file.touch()
        assert [holder.result().status_code, waiter.result().status_code] == [200, 200]
    # The slot is free again: async work runs like any call.
    taken = httpx.post(url, json={"tag": "async-3"}, headers=ASYNC, timeout=30)
    assert (taken.status_code, taken.json()) == (200, {"tag": "async-3"})
