"""Builder benchmark: the venv builder (cold build, cache hit, install strategies) and the
image builder (first vs second build with the same requirements, image size vs its inputs,
replica cold start from the image vs from the venv; see bench/builder_images.py).

    .venv/bin/python bench/builder.py [--rounds N] [--requirement REQ] [--no-images]

Baselines measured in the same run: a venv created *with* pip (ensurepip) that installs
with its own pip, and the platform pip installing with ``--prefix``. The builder uses
``venv --without-pip`` + the platform pip with ``--python`` (the first rows).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Callable
from pathlib import Path

from control_plane.adapters.builder import EnvironmentBuilder


def _pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def builder_cold(tmp: Path, req: str) -> None:
    EnvironmentBuilder(tmp / "envs").build([req], log=lambda _: None)


def builder_cached(tmp: Path, req: str) -> Callable[[], None]:
    builder = EnvironmentBuilder(tmp / "envs")
    builder.build([req], log=lambda _: None)
    return lambda: None if builder.build([req], log=lambda _: None).cached else sys.exit(1)


def baseline_venv_with_pip(tmp: Path, req: str) -> None:
    venv.EnvBuilder(with_pip=True, symlinks=True).create(tmp / "v")
    subprocess.run(
        [
            str(tmp / "v/bin/python"),
            "-m",
            "pip",
            "-q",
            "--disable-pip-version-check",
            "install",
            req,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def baseline_prefix(tmp: Path, req: str) -> None:
    venv.EnvBuilder(with_pip=False, symlinks=True).create(tmp / "v")
    _pip("install", "--prefix", str(tmp / "v"), "--no-warn-script-location", req)


def _time(setup_and_run: Callable[[Path], None], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            start = time.perf_counter()
            setup_and_run(Path(d))
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requirement", default="text-unidecode==1.3")
    parser.add_argument("--no-images", action="store_true", help="skip the image builder part")
    args = parser.parse_args()
    req, rounds = args.requirement, args.rounds

    rows: list[tuple[str, list[float]]] = []
    rows.append(
        (
            "builder: cold (venv --without-pip + pip --python)",
            _time(lambda t: builder_cold(t, req), rounds),
        )
    )
    cached_times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            again = builder_cached(Path(d), req)
            start = time.perf_counter()
            again()
            cached_times.append(time.perf_counter() - start)
    rows.append(("builder: cache hit", cached_times))
    rows.append(
        (
            "baseline: venv --without-pip + pip --prefix",
            _time(lambda t: baseline_prefix(t, req), rounds),
        )
    )
    rows.append(
        (
            "baseline: venv with ensurepip + own pip",
            _time(lambda t: baseline_venv_with_pip(t, req), rounds),
        )
    )

    print(f"requirement: {req}   rounds: {rounds}")
    print(f"{'case':<52} {'median ms':>10} {'min ms':>10}")
    for name, times in rows:
        median_ms, min_ms = statistics.median(times) * 1e3, min(times) * 1e3
        print(f"{name:<52} {median_ms:>10.2f} {min_ms:>10.2f}")
    if not args.no_images:
        from builder_images import run_image_bench  # bench/ is on sys.path as the script's dir

        print()
        run_image_bench()


if __name__ == "__main__":
    main()
