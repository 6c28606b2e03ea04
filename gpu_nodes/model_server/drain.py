"""``python -m gpu_nodes.model_server.drain --port P [--settle S] [--timeout T]``: a preStop hook.

Kubernetes runs it in the replica's container before it sends SIGTERM. It first waits
``--settle`` seconds, so every gateway has read a routing table without this (terminating) pod,
then until the server's own in-flight gauge (``plinth_replica_in_flight_requests`` on
``/metrics``) reads 0, at most ``--timeout`` seconds. Then it exits 0 and the server gets its
SIGTERM with nothing left to cut. A server that does not answer is taken as drained.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import httpx

IN_FLIGHT_METRIC = "plinth_replica_in_flight_requests"
POLL_S = 0.5


def in_flight(client: httpx.Client, url: str) -> int | None:
    """The gauge's value, or None when the server does not answer (or has no gauge)."""
    try:
        response = client.get(f"{url}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    for line in response.text.splitlines():
        if line.startswith(IN_FLIGHT_METRIC + " "):
            return int(float(line.split()[1]))
    return None


def wait_drained(
    read_in_flight: Callable[[], int | None],
    *,
    settle_s: float,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait as the module says; returns why it stopped waiting (for the pod's events)."""
    started = clock()
    sleep(min(settle_s, timeout_s))
    while True:
        busy = read_in_flight()
        elapsed = clock() - started
        if not busy:
            return f"drained after {elapsed:.1f}s"
        if elapsed >= timeout_s:
            return f"drain timeout ({timeout_s:g}s) with {busy} in flight"
        sleep(POLL_S)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_nodes.model_server.drain")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds")
    args = parser.parse_args(argv)
    url = f"http://127.0.0.1:{args.port}"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        why = wait_drained(
            lambda: in_flight(client, url), settle_s=args.settle, timeout_s=args.timeout
        )
    print(f"plinth preStop: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
