"""Autoscaling benchmark: Plinth's policy vs a Knative-KPA-style baseline vs an oracle.

    .venv/bin/python bench/autoscale.py [--trace FILE.csv] [--cold-start 30] [--service 1.0]
        [--autoscaling-window 30] [--scale-down-delay 30] [--max-replica 30] [--quick]

Replays request traces against simulated replicas (bench/autoscale_sim.py) scaled by:
  plinth            control_plane.domain.autoscaling.decide, the code the reconciler runs, with
                    --autoscaling-window and --scale-down-delay (user settings), the rest defaults
  plinth no-panic   the same without its panic window (the panic window's effect)
  plinth queue-len  the same counting a queue at its length, not its arrival rate x service time
  plinth no-drain   the same without the replicas that drain a backlog (in a window or a cold start)
  plinth 60 s/900 s Baseten's default window (60 s) and scale_down_delay (900 s)
  kpa             Knative KPA defaults: stable 60 s, panic 6 s at 200 %, target 70 %,
                  scale to zero 30 s after the stable window is idle
  oracle          knows the future: each request served on arrival, replicas started a cold start
                  ahead and kept through gaps shorter than a cold start
A request parked at zero replicas asks for one replica on arrival, for every policy (Plinth's
gateway wake, Knative's activator); the policy takes over from that count.
Traces (seeded): diurnal (a 24 h day, 0.05 -> 4 req/s), bursty (on/off), spike (1 -> 20 req/s for
60 s), or --trace FILE: a CSV with a header, column ``timestamp`` (seconds, or ISO 8601) and
optionally ``input_tokens`` and ``output_tokens``, which set each request's service time
(--prefill-ms-per-token, --decode-ms-per-token); without them every request takes --service.
Target: plinth within 1.2x the oracle's GPU-seconds at a p99 no worse than the KPA's.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from autoscale_sim import (  # noqa: E402
    Autoscaler,
    KnativeKPA,
    Request,
    Result,
    SimConfig,
    oracle,
    simulate,
)

from control_plane.domain.autoscaling import (  # noqa: E402
    AutoscalerState,
    AutoscalerTuning,
    LoadWindow,
    decide,
)
from control_plane.domain.records import AutoscalingSettings  # noqa: E402

HOUR = 3600.0


@dataclass
class PlinthAutoscaler:
    """The product's policy, state kept between decisions as the reconciler keeps it."""

    settings: AutoscalingSettings
    tuning: AutoscalerTuning
    state: AutoscalerState

    def __call__(self, window: LoadWindow, now: float) -> int:
        up = window.ready_replicas + window.starting_replicas
        if self.state.desired == 0 and up:
            # Woken by the gateway: the loop starts from the count set outside it.
            self.state = replace(self.state, desired=up, below_since=None, panicking=False)
        desired, self.state, _reason = decide(self.settings, self.state, window, now, self.tuning)
        return desired


# --- traces ------------------------------------------------------------------------------------
def poisson(rate: Callable[[float], float], peak: float, duration: float, seed: int) -> np.ndarray:
    """Arrival times of a Poisson process with a time-varying rate (thinning)."""
    rng = np.random.default_rng(seed)
    candidates = np.cumsum(rng.exponential(1.0 / peak, int(peak * duration * 1.2) + 100))
    candidates = candidates[candidates < duration]
    keep = rng.random(len(candidates)) * peak < np.array([rate(t) for t in candidates])
    return candidates[keep]


def diurnal(seed: int, hours: float) -> np.ndarray:
    day = hours * HOUR
    return poisson(
        lambda t: 0.05 + 3.95 * (1 - math.cos(2 * math.pi * t / day)) / 2, 4.0, day, seed
    )


def bursty(seed: int, hours: float) -> np.ndarray:
    """On 3-8 min at 4 req/s, off 5-25 min, repeated."""
    rng = np.random.default_rng(seed + 1)
    periods: list[tuple[float, float]] = []
    at = 0.0
    while at < hours * HOUR:
        on = rng.uniform(180, 480)
        periods.append((at, at + on))
        at += on + rng.uniform(300, 1500)
    return poisson(lambda t: 4.0 if any(a <= t < b for a, b in periods) else 0.0, 4.0, at, seed)


def spike(seed: int, hours: float) -> np.ndarray:
    """1 req/s, with 20 req/s for 60 s a third of the way in."""
    start = hours * HOUR / 3
    return poisson(lambda t: 20.0 if start <= t < start + 60 else 1.0, 20.0, hours * HOUR, seed)


def with_service(arrivals: np.ndarray, service_s: float, seed: int) -> list[Request]:
    # Service times vary +-30 % around the mean (lognormal), like prompts of different lengths.
    rng = np.random.default_rng(seed + 7)
    times = service_s * rng.lognormal(-0.045, 0.3, len(arrivals))
    return [Request(float(a), float(s)) for a, s in zip(arrivals, times, strict=True)]


def read_trace(path: Path, args: argparse.Namespace) -> list[Request]:
    """CSV: timestamp (seconds or ISO 8601), optional input_tokens / output_tokens."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "timestamp" not in rows[0]:
        raise SystemExit(f"{path}: a CSV with a 'timestamp' column is needed")
    stamps = [_seconds(row["timestamp"], path, n) for n, row in enumerate(rows, start=2)]
    first = min(stamps)
    requests = []
    for row, stamp in zip(rows, stamps, strict=True):
        if row.get("input_tokens") or row.get("output_tokens"):
            service = (
                int(row.get("input_tokens") or 0) * args.prefill_ms_per_token
                + int(row.get("output_tokens") or 0) * args.decode_ms_per_token
            ) / 1000
        else:
            service = args.service
        requests.append(Request(stamp - first, max(service, 0.001)))
    return sorted(requests, key=lambda r: r.arrival)


def _seconds(value: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise SystemExit(
            f"{path}:{line}: timestamp {value!r} is neither seconds nor ISO 8601"
        ) from None


# --- runs --------------------------------------------------------------------------------------
def policies(args: argparse.Namespace) -> dict[str, Callable[[], Autoscaler]]:
    tuned = AutoscalingSettings(
        max_replica=args.max_replica,
        autoscaling_window=args.autoscaling_window,
        scale_down_delay=args.scale_down_delay,
    ).validate()
    defaults = AutoscalingSettings(max_replica=args.max_replica).validate()

    def plinth(settings: AutoscalingSettings, tuning: AutoscalerTuning) -> Callable[[], Autoscaler]:
        return lambda: PlinthAutoscaler(settings, tuning, AutoscalerState(settings.min_replica))

    return {
        "plinth": plinth(tuned, AutoscalerTuning()),
        "plinth no-panic": plinth(tuned, AutoscalerTuning(panic_threshold=0)),
        "plinth queue-len": plinth(tuned, AutoscalerTuning(queue_at_arrival_rate=False)),
        "plinth no-drain": plinth(tuned, AutoscalerTuning(drain_backlog=False)),
        "plinth 60 s/900 s": plinth(defaults, AutoscalerTuning()),
        "kpa": lambda: KnativeKPA(
            concurrency_target=1, min_replica=0, max_replica=args.max_replica
        ),
    }


def run_trace(
    name: str, requests: Sequence[Request], args: argparse.Namespace
) -> dict[str, Result]:
    config = SimConfig(cold_start_s=args.cold_start)
    results = {label: simulate(requests, make(), config) for label, make in policies(args).items()}
    results["oracle"] = oracle(requests, config)
    return results


def print_table(name: str, requests: Sequence[Request], results: dict[str, Result]) -> bool:
    span = requests[-1].arrival / HOUR if requests else 0.0
    print(f"\n{name}: {len(requests)} requests over {span:.1f} h")
    print(
        f"{'policy':<18}{'GPU-s':>10}{'x oracle':>10}{'p50 s':>8}{'p99 s':>8}"
        f"{'cold-waited':>13}{'starts':>8}"
    )
    best = results["oracle"].gpu_seconds or 1.0
    for label, r in results.items():
        print(
            f"{label:<18}{r.gpu_seconds:>10.0f}{r.gpu_seconds / best:>10.2f}{r.p50_s:>8.2f}"
            f"{r.p99_s:>8.2f}{r.cold_waited:>13}{r.replica_starts:>8}"
        )
    plinth, kpa = results["plinth"], results["kpa"]
    met = plinth.gpu_seconds <= 1.2 * best and plinth.p99_s <= kpa.p99_s
    print(
        f"target (plinth <= 1.2x oracle GPU-s, p99 <= kpa): "
        f"{plinth.gpu_seconds / best:.2f}x, p99 {plinth.p99_s:.2f} vs {kpa.p99_s:.2f} s -> "
        f"{'met' if met else 'NOT met'}"
    )
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--trace", type=Path, help="CSV trace to replay instead of the synthetic ones"
    )
    parser.add_argument("--cold-start", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--service", type=float, default=1.0, help="mean service time, seconds")
    parser.add_argument("--prefill-ms-per-token", type=float, default=0.2)
    parser.add_argument("--decode-ms-per-token", type=float, default=20.0)
    parser.add_argument("--autoscaling-window", type=int, default=30, help="plinth's, seconds")
    parser.add_argument("--scale-down-delay", type=int, default=30, help="plinth's, seconds")
    parser.add_argument("--max-replica", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="tiny traces (a smoke test)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.trace:
        traces = {args.trace.name: read_trace(args.trace, args)}
    else:
        scale = 0.02 if args.quick else 1.0
        traces = {
            "diurnal": with_service(diurnal(args.seed, 24 * scale), args.service, args.seed),
            "bursty": with_service(bursty(args.seed, 3 * scale), args.service, args.seed),
            "spike": with_service(spike(args.seed, 1 * max(scale, 0.1)), args.service, args.seed),
        }
    print(
        f"cold start {args.cold_start:g} s, 1 request per replica at a time; plinth: "
        f"autoscaling_window {args.autoscaling_window} s, scale_down_delay "
        f"{args.scale_down_delay} s, max_replica {args.max_replica} (kpa too), the rest "
        f"Baseten's defaults"
    )
    all_met = True
    for name, requests in traces.items():
        all_met &= print_table(name, requests, run_trace(name, requests, args))
    print(f"\n{time.perf_counter() - started:.1f} s; target {'met' if all_met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
