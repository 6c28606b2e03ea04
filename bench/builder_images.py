"""Image builder benchmark (run by bench/builder.py): in a fresh image storage and pip cache,

- the Plinth base image (mmdebstrap + import; once per machine),
- a first build of a package with a requirement (tabulate) and a system package (jq),
- a second deployment with the same requirements and new model code (target: <= 10 % of the
  first: every layer up to the package's own is reused),
- the pushed image's size per layer vs the build context,
- a replica's cold start (scale to READY) from its image (pulled back by digest) vs from the
  venv runtime (venv built beforehand in both cases: start-up only).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from control_plane.adapters._local_replica import free_port
from control_plane.adapters.base_image import PlinthBaseImage
from control_plane.adapters.buildah_images import BuildahImageBuilder
from control_plane.adapters.builder import EnvironmentBuilder
from control_plane.adapters.local_cluster import LocalProcessDriver
from control_plane.ports.cluster import ReplicaPhase, ReplicaSpec
from control_plane.ports.images import ImageRequest
from plinth.local_registry import start_registry

ROOT = Path(__file__).resolve().parent.parent

EXAMPLE = ROOT / "examples" / "with-requirements"
REQUIREMENTS = ["tabulate==0.10.0"]
MB = 1e6


def _timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def _layers(registry: str, reference: str) -> list[tuple[str, int]]:
    repository, digest = reference.removeprefix(f"{registry}/").split("@")
    accept = "application/vnd.oci.image.manifest.v1+json"
    manifest = httpx.get(
        f"http://{registry}/v2/{repository}/manifests/{digest}", headers={"Accept": accept}
    ).json()
    return [(str(layer["digest"]), int(layer["size"])) for layer in manifest["layers"]]


def _cold_start(driver: LocalProcessDriver, spec: ReplicaSpec) -> float:
    start = time.perf_counter()
    driver.scale(spec, 1)
    while (state := driver.replicas(spec.deployment_id)[0]).phase is not ReplicaPhase.READY:
        if state.phase is ReplicaPhase.FAILED or time.perf_counter() - start > 300:
            raise RuntimeError(f"replica never READY: {driver.logs(spec.deployment_id)[-5:]}")
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    driver.scale(spec, 0)
    return elapsed


def run_image_bench() -> None:
    missing = [t for t in ("buildah", "mmdebstrap", "docker-registry") if not shutil.which(t)]
    if missing:
        print(f"image builder: skipped ({', '.join(missing)} not installed)")
        return
    with tempfile.TemporaryDirectory(prefix="plinth-image-bench-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port("127.0.0.1")
        registry_proc = start_registry(tmp, port, tmp / "registry.log")
        try:
            _bench(tmp, f"127.0.0.1:{port}")
        finally:
            registry_proc.terminate()
            registry_proc.wait()
            storage = tmp / "storage"
            subprocess.run(
                ["buildah", "--root", str(storage / "root"), "--runroot", str(storage / "run"),
                 "rmi", "--all", "--force"],
                capture_output=True, check=False,
            )  # fmt: skip


def _bench(tmp: Path, registry: str) -> None:
    storage, cache = tmp / "storage", tmp / "cache"
    builder = BuildahImageBuilder(registry, tmp / "builds", cache, storage_root=storage)
    base = PlinthBaseImage(cache / ".locks", storage_root=storage)
    base_s, _ = _timed(lambda: base.ensure(lambda _: None))
    package = tmp / "package"
    shutil.copytree(EXAMPLE, package)

    def build(deployment_id: str) -> tuple[float, str, int]:
        request = ImageRequest(
            deployment_id, "bench", package, system_packages=["jq"], requirements=REQUIREMENTS
        )
        work = tmp / "work" / deployment_id
        work.mkdir(parents=True)
        context = builder.prepare_context(request, work)
        seconds, reference = _timed(
            lambda: builder.build_and_push(context, request, lambda _: None)
        )
        return seconds, str(reference), context.stat().st_size

    first_s, first_ref, context_bytes = build("depbench1")
    model_py = package / "model" / "model.py"
    model_py.write_text(model_py.read_text() + "\n# second deployment\n")
    second_s, second_ref, _ = build("depbench2")
    first_layers = _layers(registry, first_ref)
    reused = {digest for digest, _ in _layers(registry, second_ref)}
    shared = sum(size for digest, size in first_layers if digest in reused)
    layers = [size for _, size in first_layers]

    venv = EnvironmentBuilder(tmp / "envs").build(REQUIREMENTS, log=lambda _: None)
    driver = LocalProcessDriver(tmp / "state", poll_interval_s=0.05)
    try:
        process_s = _cold_start(
            driver, ReplicaSpec("dep-venv", "bench", str(EXAMPLE), str(venv.python))
        )
        image_s = _cold_start(driver, ReplicaSpec("dep-image", "bench", "", "", image=first_ref))
        image_again_s = _cold_start(
            driver, ReplicaSpec("dep-image2", "bench", "", "", image=first_ref)
        )
    finally:
        driver.close()

    rows = [
        ("base image: mmdebstrap + import (once per machine)", f"{base_s:.1f} s"),
        ("first build: apt jq + tabulate + runtime + package, push", f"{first_s:.1f} s"),
        ("second build: same requirements, new model code, push", f"{second_s:.1f} s"),
        ("second / first (target <= 10 %)", f"{100 * second_s / first_s:.1f} %"),
        ("image pushed (compressed, all layers)", f"{sum(layers) / MB:.1f} MB"),
        ("  of which the base layer", f"{layers[0] / MB:.1f} MB"),
        ("  of which apt, venv, requirements, runtime, package", f"{sum(layers[1:]) / MB:.1f} MB"),
        ("build context stored in the blob store (tar.gz)", f"{context_bytes / 1e3:.0f} kB"),
        ("layers the second image shares with the first (by digest)", f"{shared / MB:.1f} MB"),
        ("cold start, venv runtime (scale -> READY)", f"{process_s:.2f} s"),
        ("cold start, container runtime, first pull by digest", f"{image_s:.2f} s"),
        ("cold start, container runtime, image already pulled", f"{image_again_s:.2f} s"),
    ]  # fmt: skip
    print("image builder (fresh image storage and pip cache)")
    print(f"{'case':<62} {'value':>10}")
    for name, value in rows:
        print(f"{name:<62} {value:>10}")
