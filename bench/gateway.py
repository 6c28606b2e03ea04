"""Gateway overhead benchmark: the same load straight at a replica and through the gateway.

Starts (loopback, subprocesses) one model server replica of a trivial package and one gateway;
a routing table is served from this process. Runs a bounded closed-loop load (N requests over C
concurrent async clients, a time cap) against each, and prints requests/s, p50 and p99 with the
gateway's overhead in absolute milliseconds and as a ratio. The replica-direct run is the baseline.

    .venv/bin/python bench/gateway.py [--requests 2000] [--concurrency 8] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_nodes.gateway import hash_api_key  # noqa: E402
from gpu_nodes.model_server.testing import ModelServerProcess, free_port, write_package  # noqa: E402

API_KEY = "bench-key"
TOKEN = "bench-internal"
TRIVIAL_MODEL = """
class Model:
    def predict(self, model_input):
        return {"ok": True, "echo": model_input}
"""


@dataclass
class Result:
    name: str
    count: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_load(
    name: str, url: str, headers: dict[str, str], total: int, concurrency: int, cap_s: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    deadline = time.monotonic() + cap_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < total and time.monotonic() < deadline:
                next_index += 1
                started = time.perf_counter()
                response = await client.post(url, json={"x": 1}, headers=headers)
                if response.status_code != 200:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)

        for _ in range(50):  # warm up connections and code paths
            await client.post(url, json={"x": 0}, headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(name, len(latencies), errors, elapsed, latencies)


def start_routing_server(table: dict[str, Any]) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = FastAPI()

    @app.get("/v1/routing")
    def routing() -> dict[str, Any]:
        return table

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{port}"


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def print_table(title: str, baseline: Result, gateway: Result) -> None:
    print(f"\n{title}")
    print(f"{'target':<24}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in (baseline, gateway):
        print(
            f"{r.name:<24}{r.count:>10}{r.errors:>8}{r.rps:>10.0f}"
            f"{r.pct(0.5):>10.2f}{r.pct(0.99):>10.2f}"
        )
    p50 = gateway.pct(0.5) - baseline.pct(0.5)
    p99 = gateway.pct(0.99) - baseline.pct(0.99)
    ratio = baseline.rps / gateway.rps if gateway.rps else float("inf")
    mean_ratio = statistics.mean(gateway.latencies_ms) / statistics.mean(baseline.latencies_ms)
    print(
        f"gateway overhead: p50 +{p50:.2f} ms, p99 +{p99:.2f} ms, "
        f"throughput direct/gateway = {ratio:.2f}x, mean latency gateway/direct = {mean_ratio:.2f}x"
    )


def routing_table(replica_url: str) -> dict[str, Any]:
    deployment = {"replicas": [{"id": "r1", "url": replica_url, "ready": True}]}
    model = {
        "name": "trivial",
        "environments": {"production": "d1"},
        "deployments": {"d1": deployment},
    }
    return {"version": 1, "api_key_hashes": [hash_api_key(API_KEY)], "models": {"m1": model}}


def start_gateway(cp_url: str, port: int, log_file: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gpu_nodes.gateway", "--control-plane-url", cp_url]
    command += ["--port", str(port), "--internal-token", TOKEN]
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)


def measure(
    direct_url: str, gateway_url: str, shapes: list[tuple[int, int]], cap: float
) -> list[tuple[str, Result, Result]]:
    auth = {"Authorization": f"Api-Key {API_KEY}"}
    runs = []
    for total, concurrency in shapes:
        direct = asyncio.run(
            run_load("replica (baseline)", direct_url, {}, total, concurrency, cap)
        )
        via = asyncio.run(run_load("through gateway", gateway_url, auth, total, concurrency, cap))
        runs.append((f"N={total} C={concurrency}", direct, via))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-requests", type=int, default=300, help="C=1 run size")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    shapes = [(args.requests, args.concurrency), (args.latency_requests, 1)]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        package = write_package(root / "trivial", TRIVIAL_MODEL, {"model_name": "trivial"})
        replica = ModelServerProcess(package, log_path=root / "replica.log")
        server, thread, cp_url = start_routing_server(routing_table(replica.url))
        gw_port = free_port()
        gw_log = (root / "gateway.log").open("wb")
        gateway = start_gateway(cp_url, gw_port, gw_log)
        try:
            replica.wait_ready()
            wait_http(f"http://127.0.0.1:{gw_port}/healthz")
            runs = measure(
                f"{replica.url}/v1/models/model:predict",
                f"http://127.0.0.1:{gw_port}/models/m1/production/predict",
                shapes,
                args.max_seconds,
            )
        finally:
            gateway.terminate()
            gateway.wait(10)
            gw_log.close()
            replica.stop()
            server.should_exit = True
            thread.join(10)
    print(f"closed-loop load on loopback, {args.max_seconds:g}s cap per run; baseline = direct")
    for title, direct, via in runs:
        print_table(title, direct, via)
    return 0 if all(d.errors == 0 and v.errors == 0 for _, d, v in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
