"""Weight delivery benchmark: node agent vs plain copies, all against one loopback origin.

    .venv/bin/python bench/weights.py [--size-mb 1024] [--rate-mbps 250] [--replicas 8]

Scenarios (the origin is a separate process serving a DirectoryBlobStore, counting bytes; (a)
runs against it unlimited and again rate-limited to emulate a network link, where the copy is
network-bound; unlimited on a small host it is CPU-bound and sha256 verification shows):
  a) cold pull of a multi-shard safetensors checkpoint vs a plain parallel copy of the same bytes
     from the same origin (same concurrency, no cache, no verification)    target >= 0.85x
  b) bytes fetched for a fine-tune changing ~10% of the tensors of the cached base
     (file-level dedup would fetch 100%)                                   target <= 15%
  c) N agent processes starting at once on one node: origin bytes / model  target 1.0x
  d) warm start from the node cache vs a raw copy of the files             (reported)
Everything lives in a temp dir that is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from control_plane.adapters.dir_blob import DirectoryBlobStore  # noqa: E402
from control_plane.weights import mirror_source, open_source  # noqa: E402
from gpu_nodes.weights.agent import EnsureOptions, ensure_weights  # noqa: E402
from plinth.contracts.weights_manifest import Manifest  # noqa: E402

MIB = 1 << 20
# Seven sizes (coprime with the every-10th-tensor fine-tune) so changes hit every size.
TENSOR_PATTERN = [24 * MIB, 6 * MIB, 6 * MIB, 16 << 10, 16 << 10, 12 * MIB, 6 * MIB]


# --- model generation -----------------------------------------------------------------------
def write_checkpoints(base_dir: Path, tuned_dir: Path, size_mb: int, shards: int) -> float:
    """Base + fine-tune (~10% of tensors changed); returns the fraction of bytes changed."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    base_dir.mkdir(parents=True)
    tuned_dir.mkdir(parents=True)
    per_shard = size_mb * MIB // shards
    changed_bytes = total_bytes = index = 0
    for shard in range(shards):
        tensors: dict[str, np.ndarray] = {}
        filled = 0
        while filled < per_shard:
            nbytes = min(TENSOR_PATTERN[index % len(TENSOR_PATTERN)], per_shard - filled)
            nbytes = max(4, nbytes - nbytes % 4)
            tensors[f"t{index:05d}"] = np.frombuffer(rng.bytes(nbytes), dtype=np.float32)
            filled += nbytes
            index += 1
        name = f"model-{shard:05d}-of-{shards:05d}.safetensors"
        save_file(tensors, str(base_dir / name))
        for position, key in enumerate(sorted(tensors)):
            total_bytes += tensors[key].nbytes
            # Every 10th tensor, skipping any that would push the changed bytes past ~10%.
            if position % 10 == 3 and changed_bytes + tensors[key].nbytes <= 0.11 * total_bytes:
                changed_bytes += tensors[key].nbytes
                tensors[key] = tensors[key].copy()
                tensors[key][::7] = 0.5
        save_file(tensors, str(tuned_dir / name))
    for directory in (base_dir, tuned_dir):
        (directory / "config.json").write_text('{"model_type": "bench"}')
    return changed_bytes / total_bytes


# --- origin process ---------------------------------------------------------------------------
def rate_limited(app: Any, rate_bytes_s: float) -> Any:
    """ASGI wrapper pacing all response bodies to one shared rate (a token bucket)."""
    state = {"next_free": 0.0}
    lock = asyncio.Lock()

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        async def paced_send(message: dict[str, Any]) -> None:
            body = message.get("body", b"")
            if message["type"] != "http.response.body" or not body:
                await send(message)
                return
            step = 256 << 10
            for pos in range(0, len(body), step):
                piece = body[pos : pos + step]
                async with lock:
                    now = time.monotonic()
                    start = max(now, state["next_free"])
                    state["next_free"] = start + len(piece) / rate_bytes_s
                await asyncio.sleep(max(0.0, start - now))
                more = message.get("more_body", False) or pos + step < len(body)
                await send({"type": "http.response.body", "body": piece, "more_body": more})

        await app(scope, receive, paced_send)

    return wrapped


def serve_origin(blob_dir: Path, port: int, rate_mbps: float) -> None:
    import uvicorn

    from control_plane.weights.origin import create_origin_app

    app: Any = create_origin_app(DirectoryBlobStore(blob_dir))
    if rate_mbps > 0:
        app = rate_limited(app, rate_mbps * MIB)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def origin_bytes(url: str) -> int:
    return int(httpx.get(f"{url}/stats", timeout=10).json()["bytes_served"])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(f"{url}/stats", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("origin did not start")


# --- baselines --------------------------------------------------------------------------------
def plain_parallel_copy(manifest: Manifest, origin: str, dest: Path, concurrency: int) -> None:
    """Same bytes, same origin, same concurrency: GET each piece and pwrite it, nothing else."""
    jobs = []
    for entry in manifest.files:
        path = dest / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            handle.truncate(entry.size)
        jobs += [(path, ref.hash, ref.offset) for ref in entry.chunks]
    limits = httpx.Limits(max_connections=concurrency + 2)
    with httpx.Client(timeout=60, limits=limits) as client:

        def fetch(job: tuple[Path, str, int]) -> None:
            path, chunk_hash, offset = job
            fd = os.open(path, os.O_WRONLY)
            try:
                with client.stream("GET", f"{origin}/chunks/{chunk_hash}") as response:
                    response.raise_for_status()
                    for piece in response.iter_raw():
                        os.pwrite(fd, piece, offset)
                        offset += len(piece)
            finally:
                os.close(fd)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(fetch, jobs))


def timed(fn: Callable[[], object]) -> float:
    # Flush earlier phases' dirty pages so each measurement starts from the same disk state.
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def agent_processes(manifest_id: str, work: Path, origin: str, replicas: int) -> float:
    cache = work / "replica-cache"
    cmds = [
        [
            sys.executable,
            "-m",
            "gpu_nodes.weights.agent",
            "--manifest",
            manifest_id,
            "--mount-root",
            str(work / f"replica-{i}"),
            "--cache-dir",
            str(cache),
            "--origin-url",
            origin,
        ]
        for i in range(replicas)
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL) for c in cmds]
    for proc in procs:
        if proc.wait(timeout=900) != 0:
            raise RuntimeError("an agent process failed")
    return time.perf_counter() - start


# --- main -------------------------------------------------------------------------------------
Row = tuple[str, str, str, str, str]


def start_origin(blob_dir: Path, rate_mbps: float) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    cmd = [sys.executable, __file__, "--serve-origin", str(blob_dir), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--rate-mbps", str(rate_mbps)])
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return url, proc


def cold_pull_row(
    manifest: Manifest, origin: str, work: Path, args: argparse.Namespace, label: str
) -> Row:
    """Alternate plain copy and cold agent pull, keep the best of each (the host is shared)."""
    plain_s = cold_s = float("inf")
    for _ in range(args.trials):
        plain_s = min(
            plain_s,
            timed(lambda: plain_parallel_copy(manifest, origin, work / "plain", args.concurrency)),
        )
        shutil.rmtree(work / "plain")
        cold_s = min(
            cold_s,
            timed(
                lambda: ensure_weights(
                    manifest.manifest_id,
                    EnsureOptions(
                        mount_root=work / "cold",
                        cache_dir=work / "cache",
                        origin_url=origin,
                        concurrency=args.concurrency,
                    ),
                )
            ),
        )
        shutil.rmtree(work / "cold")
        shutil.rmtree(work / "cache")
    ratio = plain_s / cold_s
    size_mb = manifest.total_bytes / MIB
    verdict = "PASS" if ratio >= 0.85 else "FAIL"
    return (
        f"a) cold pull MB/s, {label}",
        f"{size_mb / cold_s:.0f}",
        f"{size_mb / plain_s:.0f} (plain copy)",
        f"{ratio:.2f}x",
        f">=0.85x {verdict}",
    )


def cache_rows(
    base: Manifest, tuned: Manifest, changed: float, origin: str, work: Path, replicas: int
) -> list[Row]:
    rows: list[Row] = []
    ensure_weights(
        base.manifest_id,
        EnsureOptions(mount_root=work / "cold", cache_dir=work / "cache", origin_url=origin),
    )
    before = origin_bytes(origin)
    ensure_weights(
        tuned.manifest_id,
        EnsureOptions(mount_root=work / "tuned-mount", cache_dir=work / "cache", origin_url=origin),
    )
    frac = (origin_bytes(origin) - before) / tuned.total_bytes
    rows.append(
        (
            "b) fine-tune bytes fetched",
            f"{frac:.1%}",
            "100% (file-level dedup)",
            f"{changed:.1%} of bytes changed",
            f"<=15% {'PASS' if frac <= 0.15 else 'FAIL'}",
        )
    )
    before = origin_bytes(origin)
    wall = agent_processes(base.manifest_id, work, origin, replicas)
    multiple = (origin_bytes(origin) - before) / base.total_bytes
    rows.append(
        (
            f"c) {replicas} agent processes at once",
            f"{multiple:.2f}x model",
            f"{replicas}.00x (no sharing)",
            f"{wall:.1f}s wall",
            f"1.0x {'PASS' if multiple <= 1.01 else 'FAIL'}",
        )
    )
    shutil.rmtree(work / "replica-cache")
    warm_s = timed(
        lambda: ensure_weights(
            base.manifest_id, EnsureOptions(mount_root=work / "warm", cache_dir=work / "cache")
        )
    )
    raw_s = timed(lambda: shutil.copytree(work / "cold" / "m", work / "rawcopy"))
    rows.append(
        (
            "d) warm start s",
            f"{warm_s:.3f}",
            f"{raw_s:.3f} (raw copy of files)",
            f"{raw_s / warm_s:.1f}x faster",
            "reported",
        )
    )
    return rows


def run(args: argparse.Namespace, work: Path) -> list[Row]:
    t0 = time.perf_counter()
    changed = write_checkpoints(work / "base", work / "tuned", args.size_mb, args.shards)
    store = DirectoryBlobStore(work / "blobs")
    base = mirror_source(open_source(str(work / "base")), store, mount_location="/m")
    tuned = mirror_source(open_source(str(work / "tuned")), store, mount_location="/m")
    shutil.rmtree(work / "tuned")
    print(f"setup: {args.size_mb} MiB checkpoint, mirrored in {time.perf_counter() - t0:.1f}s")
    servers = []
    try:
        origin, proc = start_origin(work / "blobs", 0)
        servers.append(proc)
        rows = [cold_pull_row(base, origin, work, args, "origin unlimited")]
        if args.rate_mbps > 0:
            limited, proc = start_origin(work / "blobs", args.rate_mbps)
            servers.append(proc)
            label = f"origin at {args.rate_mbps:.0f} MB/s"
            rows.append(cold_pull_row(base, limited, work, args, label))
        rows += cache_rows(base, tuned, changed, origin, work, args.replicas)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=10)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument(
        "--rate-mbps", type=float, default=250.0, help="also measure (a) at this origin rate"
    )
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--trials", type=int, default=3, help="cold-pull repetitions (best)")
    parser.add_argument("--serve-origin", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_origin:
        serve_origin(args.serve_origin, args.port, args.rate_mbps)
        return 0
    with tempfile.TemporaryDirectory(prefix="plinth-bench-weights-") as tmp:
        rows = run(args, Path(tmp))
    header = ("scenario", "plinth", "baseline", "ratio", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
