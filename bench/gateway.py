"""Gateway overhead benchmark: the same load straight at a replica and through the gateway.

Starts (loopback, subprocesses) one model server replica of a trivial package and one gateway
(optionally a second gateway from another checkout, ``--compare-gateway ROOT``, e.g. main's tree
to measure a change before and after in the same window); a routing table is served from this
process. Runs a bounded closed-loop load (N requests over C concurrent async clients, a time cap)
against each target in turn, in rounds whose order alternates (A B C, then C B A, ...) so that
noise from other work on the machine hits every target alike. Prints, per load shape, the median
over the rounds of requests/s, p50 and p99, each gateway's ratio and p50 overhead against the
direct run of the same round, and the CPU time per request of each process (the gateway's own
cost, the least noisy figure on a shared machine). The replica-direct run is the baseline.

    .venv/bin/python bench/gateway.py [--requests 2000] [--concurrency 8] [--rounds 3]
                                      [--compare-gateway /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
import psutil
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_nodes.gateway import hash_api_key  # noqa: E402
from gpu_nodes.model_server.testing import ModelServerProcess, free_port, write_package  # noqa: E402

API_KEY = "bench-key"
TOKEN = "bench-internal"
WARM_UP_REQUESTS = 50
TRIVIAL_MODEL = """
class Model:
    def predict(self, model_input):
        return {"ok": True, "echo": model_input}
"""


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    process: psutil.Process | None  # the gateway serving it; None for the replica itself


@dataclass
class Result:
    count: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    cpu_us: dict[str, float]  # process ("client", "replica", "gateway") -> CPU µs per request

    @property
    def rps(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_load(
    target: Target, replica: psutil.Process, total: int, concurrency: int, cap_s: float
) -> Result:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:

        async def worker(deadline: float) -> None:
            nonlocal next_index, errors
            while next_index < total and time.monotonic() < deadline:
                next_index += 1
                started = time.perf_counter()
                response = await client.post(target.url, json={"x": 1}, headers=target.headers)
                if response.status_code != 200:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)

        for _ in range(WARM_UP_REQUESTS):  # connections and code paths
            await client.post(target.url, json={"x": 0}, headers=target.headers)
        processes = {"client": psutil.Process(), "replica": replica}
        if target.process is not None:
            processes["gateway"] = target.process
        cpu_before = {name: cpu_seconds(p) for name, p in processes.items()}
        started = time.perf_counter()
        deadline = time.monotonic() + cap_s
        await asyncio.gather(*(worker(deadline) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu_us = {
            name: (cpu_seconds(p) - cpu_before[name]) / max(1, len(latencies)) * 1e6
            for name, p in processes.items()
        }
    return Result(len(latencies), errors, elapsed, latencies, cpu_us)


def start_routing_server(table: dict[str, Any]) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = FastAPI()

    @app.get("/v1/routing")
    def routing() -> dict[str, Any]:
        return table

    @app.post("/v1/load_reports")
    def load_reports() -> dict[str, Any]:
        return {}

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


def routing_table(replica_url: str) -> dict[str, Any]:
    deployment = {"replicas": [{"id": "r1", "url": replica_url, "ready": True}]}
    model = {
        "name": "trivial",
        "environments": {"production": "d1"},
        "deployments": {"d1": deployment},
    }
    return {"version": 1, "api_key_hashes": [hash_api_key(API_KEY)], "models": {"m1": model}}


def start_gateway(cp_url: str, port: int, log_file: Any, root: Path) -> subprocess.Popen[bytes]:
    """The gateway of the checkout at ``root`` (its code imported, not this tree's)."""
    command = [sys.executable, "-m", "gpu_nodes.gateway", "--control-plane-url", cp_url]
    command += ["--port", str(port), "--internal-token", TOKEN]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=root, env=env)


def measure(
    targets: list[Target],
    replica: psutil.Process,
    shapes: list[tuple[int, int]],
    rounds: int,
    cap: float,
) -> dict[tuple[int, int], list[dict[str, Result]]]:
    """Every shape, every round, every target; the order of targets flips each round."""
    runs: dict[tuple[int, int], list[dict[str, Result]]] = {shape: [] for shape in shapes}
    for index in range(rounds):
        order = targets if index % 2 == 0 else targets[::-1]
        for total, concurrency in shapes:
            results = {}
            for target in order:
                results[target.name] = asyncio.run(
                    run_load(target, replica, total, concurrency, cap)
                )
            runs[(total, concurrency)].append(results)
    return runs


def print_table(title: str, targets: list[Target], rounds: list[dict[str, Result]]) -> None:
    direct = targets[0].name
    print(f"\n{title}, median of {len(rounds)} round(s)")
    print(
        f"{'target':<34}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'x direct':>10}{'p50 +ms':>9}"
        f"{'CPU us/req: gateway':>21}{'replica':>9}{'client':>8}"
    )
    for target in targets:
        results = [r[target.name] for r in rounds]

        def median(values: list[float]) -> float:
            return statistics.median(values)

        ratio = median([r[target.name].rps / r[direct].rps for r in rounds if r[direct].rps])
        p50_over = median([r[target.name].pct(0.5) - r[direct].pct(0.5) for r in rounds])
        gateway_cpu = median([r.cpu_us.get("gateway", 0.0) for r in results])
        print(
            f"{target.name:<34}{median([r.rps for r in results]):>8.0f}"
            f"{median([r.pct(0.5) for r in results]):>8.2f}"
            f"{median([r.pct(0.99) for r in results]):>8.2f}"
            f"{ratio:>9.2f}x{p50_over:>+9.2f}"
            f"{gateway_cpu if target.process else float('nan'):>21.0f}"
            f"{median([r.cpu_us['replica'] for r in results]):>9.0f}"
            f"{median([r.cpu_us['client'] for r in results]):>8.0f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-requests", type=int, default=300, help="C=1 run size")
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds; medians are printed")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="cap per run")
    parser.add_argument(
        "--compare-gateway",
        type=Path,
        default=None,
        help="root of another checkout whose gateway also runs, in the same rounds",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    shapes = [(args.requests, args.concurrency), (args.latency_requests, 1)]
    roots = [ROOT] + ([args.compare_gateway.resolve()] if args.compare_gateway else [])
    auth = {"Authorization": f"Api-Key {API_KEY}"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        package = write_package(root / "trivial", TRIVIAL_MODEL, {"model_name": "trivial"})
        replica = ModelServerProcess(package, log_path=root / "replica.log")
        server, thread, cp_url = start_routing_server(routing_table(replica.url))
        targets = [Target("replica (baseline)", f"{replica.url}/v1/models/model:predict", {}, None)]
        gateways, logs = [], []
        try:
            for index, code_root in enumerate(roots):
                port = free_port()
                logs.append((root / f"gateway{index}.log").open("wb"))
                gateways.append(start_gateway(cp_url, port, logs[-1], code_root))
                name = "gateway (this tree)" if index == 0 else f"gateway ({code_root})"
                url = f"http://127.0.0.1:{port}/models/m1/production/predict"
                targets.append(Target(name[:33], url, auth, psutil.Process(gateways[-1].pid)))
            replica.wait_ready()
            for target in targets[1:]:
                wait_http(target.url.split("/models/")[0] + "/healthz")
            replica_process = psutil.Process(replica.process.pid)
            runs = measure(targets, replica_process, shapes, args.rounds, args.max_seconds)
        finally:
            for gateway in gateways:
                gateway.terminate()
                gateway.wait(10)
            for log in logs:
                log.close()
            replica.stop()
            server.should_exit = True
            thread.join(10)
    print(f"closed-loop load on loopback, {args.max_seconds:g}s cap per run; baseline = direct")
    for (total, concurrency), rounds in runs.items():
        print_table(f"N={total} C={concurrency}", targets, rounds)
    results = [r for rounds in runs.values() for one_round in rounds for r in one_round.values()]
    return 0 if all(r.errors == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
