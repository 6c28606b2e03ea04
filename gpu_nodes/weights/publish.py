"""Publish: place a manifest's file blobs under the mount directory.

Mounts are hard links to the read-only blobs under ``files/<sha256>`` (a copy when links cannot
cross filesystems), so N replicas on a node share one copy of the bytes. Two layouts: ``plain``
(files at ``<mount>/<path>``) and ``hf`` (the Hugging Face Hub cache layout).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from gpu_nodes.weights.exceptions import WeightsError
from gpu_nodes.weights.node_cache import NodeCache
from plinth.contracts.weights_manifest import Manifest

Layout = Literal["plain", "hf"]
LAYOUTS: tuple[Layout, ...] = ("plain", "hf")


def publish(cache: NodeCache, manifest: Manifest, mount_dir: Path, layout: Layout) -> list[Path]:
    """Place every file of ``manifest`` (all blobs must be published); returns the paths."""
    if layout == "hf":
        return materialise_hf_cache(cache, manifest, mount_dir)
    return materialise_plain(cache, manifest, mount_dir)


def _link_or_copy(blob: Path, dest: Path) -> None:
    if dest.exists() and os.path.samefile(blob, dest):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(blob, tmp)
    except OSError:
        shutil.copyfile(blob, tmp)
    os.replace(tmp, dest)


def _safe_join(root: Path, relative: str) -> Path:
    dest = (root / relative).resolve()
    if not dest.is_relative_to(root.resolve()):
        raise WeightsError(f"manifest path escapes the mount: {relative!r}")
    return dest


def materialise_plain(cache: NodeCache, manifest: Manifest, mount_dir: Path) -> list[Path]:
    """Files at ``mount_dir/<path>``, hard-linked to their blobs."""
    placed = []
    for entry in manifest.files:
        dest = _safe_join(mount_dir, entry.path)
        _link_or_copy(cache.file_path(entry.sha256), dest)
        placed.append(dest)
    return placed


def materialise_hf_cache(cache: NodeCache, manifest: Manifest, mount_dir: Path) -> list[Path]:
    """HF Hub cache layout: ``models--org--repo/{blobs/<sha>, snapshots/<rev>/<path>, refs/main}``.

    Point ``HF_HUB_CACHE`` at ``mount_dir`` and ``from_pretrained("org/repo", revision=rev)``
    loads offline.
    """
    if not manifest.source.startswith("hf://"):
        raise WeightsError(f"hf cache layout needs an hf:// source, got {manifest.source!r}")
    repo = manifest.source[len("hf://") :].partition("@")[0]
    revision = manifest.revision or "main"
    repo_dir = mount_dir / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    placed = []
    for entry in manifest.files:
        blob = repo_dir / "blobs" / entry.sha256
        _link_or_copy(cache.file_path(entry.sha256), blob)
        link = _safe_join(snapshot, entry.path)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        placed.append(link)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    return placed
