"""Async inference benchmark on a real `plinth up` with a trivial model (examples/hello).

Measures enqueue throughput (async_predict answered 201, C concurrent callers), end-to-end
latency (created_at -> finished_at, from the records), and sync predict p50/p99 on the same
replica with and without an async backlog being drained. Target: sync p99 with the backlog
<= 1.2x without.

    .venv/bin/python bench/async.py [--enqueue 500] [--backlog 1000] [--sync 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plinth.local import LocalPlatform, start_platform  # noqa: E402

FINAL = {"SUCCEEDED", "FAILED", "EXPIRED", "CANCELED"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def push_hello(platform: LocalPlatform) -> str:
    env = {**os.environ, "PLINTH_STATE_DIR": str(platform.state_dir), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "plinth.cli.main", "push", str(ROOT / "examples/hello")]
    subprocess.run([*cmd, "--promote"], env=env, check=True, capture_output=True, timeout=600)
    headers = {"Authorization": f"Api-Key {platform.endpoints.api_key}"}
    models = httpx.get(platform.endpoints.control_plane_url + "/v1/models", headers=headers).json()[
        "models"
    ]
    return str(next(m["id"] for m in models if m["name"] == "hello"))


def enqueue(
    client: httpx.Client, model: str, count: int, concurrency: int
) -> tuple[list[str], float]:
    def one(n: int) -> str:
        answer = client.post(
            f"/models/{model}/production/async_predict", json={"model_input": {"x": n}}
        )
        answer.raise_for_status()
        return str(answer.json()["request_id"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        ids = list(pool.map(one, range(count)))
    return ids, time.perf_counter() - start


def drain(client: httpx.Client, ids: list[str], timeout: float = 900.0) -> list[dict[str, Any]]:
    deadline, views = time.monotonic() + timeout, {}
    while len(views) < len(ids) and time.monotonic() < deadline:
        for request_id in ids:
            if request_id not in views:
                view = client.get(f"/async_request/{request_id}").json()
                if view["status"] in FINAL:
                    views[request_id] = view
        time.sleep(0.5)
    return list(views.values())


def sync_latencies(client: httpx.Client, model: str, count: int) -> list[float]:
    latencies = []
    for n in range(count):
        start = time.perf_counter()
        client.post(f"/models/{model}/production/predict", json={"x": n}).raise_for_status()
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--enqueue", type=int, default=500)
    parser.add_argument("--backlog", type=int, default=1000)
    parser.add_argument("--sync", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        platform = start_platform(Path(state), "127.0.0.1", free_port(), free_port())
        try:
            model = push_hello(platform)
            ep = platform.endpoints
            headers = {"Authorization": f"Api-Key {ep.api_key}"}
            with httpx.Client(base_url=ep.gateway_url, headers=headers, timeout=60) as client:
                sync_latencies(client, model, 20)  # warm up
                ids, seconds = enqueue(client, model, args.enqueue, args.concurrency)
                views = drain(client, ids)
                e2e = [v["finished_at"] - v["created_at"] for v in views]
                quiet = sync_latencies(client, model, args.sync)
                backlog_ids, _ = enqueue(client, model, args.backlog, args.concurrency)
                loaded = sync_latencies(client, model, args.sync)
                drain(client, backlog_ids)
        finally:
            platform.stop()
    ok = sum(v["status"] == "SUCCEEDED" for v in views)
    print(
        f"enqueue: {args.enqueue} requests in {seconds:.2f} s = {args.enqueue / seconds:.0f} req/s"
    )
    print(
        f"end to end: {ok}/{len(ids)} SUCCEEDED, p50 {statistics.median(e2e):.2f} s,"
        f" p99 {percentile(e2e, 0.99):.2f} s"
    )
    print(f"{'sync predict':<28}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in (("no async backlog", quiet), (f"{args.backlog} async backlog", loaded)):
        print(f"{name:<28}{statistics.median(values):>10.1f}{percentile(values, 0.99):>10.1f}")
    ratio = percentile(loaded, 0.99) / percentile(quiet, 0.99)
    print(f"p99 ratio {ratio:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
