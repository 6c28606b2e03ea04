"""runtime.predict_concurrency bounds predict (not pre/post), proven with in-model events."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

HOLDING_MODEL = """
import json
import threading
import time
from pathlib import Path

class Model:
    def __init__(self, config):
        meta = config["model_metadata"]
        self._events = Path(meta["events_file"])
        self._release = Path(meta["release_file"])
        self._lock = threading.Lock()

    def _record(self, kind, tag):
        with self._lock:
            with self._events.open("a") as f:
                f.write(json.dumps({"kind": kind, "tag": tag, "t": time.monotonic()}) + "\\n")

    def preprocess(self, model_input):
        self._record("pre", model_input["tag"])
        return model_input

    def predict(self, model_input):
        self._record("start", model_input["tag"])
        deadline = time.monotonic() + 20
        while not self._release.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._record("end", model_input["tag"])
        return {"tag": model_input["tag"]}
"""


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError("condition not met in time")


def test_predict_concurrency_two_runs_two_and_queues_the_third(serve, tmp_path: Path) -> None:
    events_file, release_file = tmp_path / "events.jsonl", tmp_path / "release"
    config = {
        "model_name": "holder",
        "runtime": {"predict_concurrency": 2},
        "model_metadata": {"events_file": str(events_file), "release_file": str(release_file)},
    }
    server = serve(HOLDING_MODEL, config)
    url = f"{server.url}/v1/models/model:predict"

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(httpx.post, url, json={"tag": t}, timeout=30) for t in "abc"]
        # All three pass preprocess (not limited); exactly two enter predict.
        _wait_for(lambda: sum(e["kind"] == "pre" for e in _events(events_file)) == 3)
        _wait_for(lambda: sum(e["kind"] == "start" for e in _events(events_file)) == 2)
        # The third is parked on the semaphore: it has passed preprocess and still not started.
        assert sum(e["kind"] == "start" for e in _events(events_file)) == 2
        release_file.touch()
        results = sorted(f.result().json()["tag"] for f in futures)
    assert results == ["a", "b", "c"]

    timeline = [e for e in _events(events_file) if e["kind"] in ("start", "end")]
    running, peak = 0, 0
    for event in sorted(timeline, key=lambda e: e["t"]):
        running += 1 if event["kind"] == "start" else -1
        peak = max(peak, running)
    assert peak == 2
    starts = sorted(e["t"] for e in timeline if e["kind"] == "start")
    first_end = min(e["t"] for e in timeline if e["kind"] == "end")
    assert starts[1] < first_end  # two ran at once
    assert starts[2] >= first_end  # the third only after one finished
