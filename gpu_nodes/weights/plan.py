"""The weight agent's planner: which chunks a mount still needs, from where, and how each file
is built. Pure: no I/O, no clock, no threads; the agent observes the node cache, asks for a
plan, and hands it to the fill (``fill.py``).

Rules, in the order they apply:

- A file whose blob is already published on the node needs nothing (``files/<sha256>``).
- A chunk of a pending file is *present* when its bytes can be read on the node (its own chunk
  file, or a region of a published blob: a fine-tune reuses its base model's chunks this way);
  every other chunk is fetched over the network, once, however many files share it.
- A *cold* file (none of its chunks present, none shared with another pending file) is
  downloaded in place: each chunk written straight at its offset in the blob being built, so
  its bytes are written once. Every other pending file is assembled from chunks in order while
  its missing chunks download into ``chunks/``. With ``keep_chunks`` every file is assembled, so
  each chunk also stays on the node as its own file.
- Network tiers are tried cluster cache first (it fills from the origin once for the whole
  cluster), then the origin. The agent does not know which chunks the cluster tier holds: a
  miss there is filled by the cluster cache itself, so the plan is the same on a hit and a miss.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from plinth.contracts.weights_manifest import FileEntry, Manifest


class Tier(enum.Enum):
    """A network tier serving ``GET /chunks/<sha256>`` and ``GET /manifests/<id>.json``."""

    CLUSTER = "cluster"
    ORIGIN = "origin"


class FileAction(enum.Enum):
    IN_PLACE = "in_place"  # every chunk downloaded straight into the file blob
    ASSEMBLE = "assemble"  # present chunks copied, missing ones fetched into chunks/ first


@dataclass(frozen=True)
class NodeView:
    """What the node cache held when the agent looked (after pinning, so it cannot vanish)."""

    files: frozenset[str]  # sha256 of published file blobs
    chunks: frozenset[str]  # chunk hashes whose bytes are readable on the node


@dataclass(frozen=True)
class ChunkFetch:
    """One chunk to download into ``chunks/`` before the files that use it are assembled."""

    hash: str
    length: int


@dataclass(frozen=True)
class FileStep:
    """How one pending file blob gets built."""

    entry: FileEntry
    action: FileAction
    reused: tuple[str, ...]  # chunk hashes read from the node, unique, in file order
    fetched: tuple[str, ...]  # chunk hashes that arrive over the network, unique, in file order


@dataclass(frozen=True)
class FillPlan:
    sources: tuple[Tier, ...]  # network tiers in the order they are tried
    fetches: tuple[ChunkFetch, ...]  # chunks for assembled files, in the order files need them
    files: tuple[FileStep, ...]  # one step per pending blob, manifest order
    bytes_present: int  # unique chunk bytes of the manifest already on the node
    bytes_incoming: int  # room the cache makes before filling (missing chunks + pending files)
    keep_chunks: bool  # keep chunk files after assembly instead of only (blob, offset) locations

    @property
    def bytes_to_fetch(self) -> int:
        """Network bytes the plan needs: each missing chunk once (repeats are copied locally)."""
        missing: dict[str, int] = {}
        for step in self.files:
            fetched = set(step.fetched)
            missing.update((r.hash, r.length) for r in step.entry.chunks if r.hash in fetched)
        return sum(missing.values())


def network_order(tiers: Collection[Tier]) -> tuple[Tier, ...]:
    """The configured tiers in the order they are asked: cluster cache, then origin."""
    return tuple(tier for tier in (Tier.CLUSTER, Tier.ORIGIN) if tier in tiers)


def _missing_chunks(pending: list[FileEntry], node: NodeView) -> dict[str, int]:
    """Chunk hash -> length of every chunk of a pending file that is not on the node."""
    missing: dict[str, int] = {}
    for entry in pending:
        for ref in entry.chunks:
            if ref.hash not in node.chunks:
                missing.setdefault(ref.hash, ref.length)
    return missing


def _cold_files(pending: list[FileEntry], missing: dict[str, int]) -> set[str]:
    """sha256 of the files none of whose chunks is on the node or shared with another pending
    file: downloading them in place writes each byte once."""
    holders: dict[str, set[str]] = {}
    for entry in pending:
        for ref in entry.chunks:
            holders.setdefault(ref.hash, set()).add(entry.sha256)
    return {
        entry.sha256
        for entry in pending
        if all(ref.hash in missing and len(holders[ref.hash]) == 1 for ref in entry.chunks)
    }


def _step(entry: FileEntry, cold: bool, missing: dict[str, int]) -> FileStep:
    unique = list(dict.fromkeys(ref.hash for ref in entry.chunks))
    return FileStep(
        entry=entry,
        action=FileAction.IN_PLACE if cold else FileAction.ASSEMBLE,
        reused=tuple(h for h in unique if h not in missing),
        fetched=tuple(h for h in unique if h in missing),
    )


def _fetches_for(steps: list[FileStep], missing: dict[str, int]) -> tuple[ChunkFetch, ...]:
    """Missing chunks of assembled files, each once, in the order the files need them (in-place
    files fetch their own chunks straight into their blob)."""
    order: dict[str, int] = {}
    for step in steps:
        if step.action is FileAction.ASSEMBLE:
            for chunk_hash in step.fetched:
                order.setdefault(chunk_hash, missing[chunk_hash])
    return tuple(ChunkFetch(h, length) for h, length in order.items())


def plan_fill(
    manifest: Manifest, node: NodeView, *, tiers: Collection[Tier], keep_chunks: bool
) -> FillPlan:
    """What to fetch, from where, and how to build each file the node does not have yet."""
    pending = [entry for entry in manifest.files if entry.sha256 not in node.files]
    missing = _missing_chunks(pending, node)
    cold = set() if keep_chunks else _cold_files(pending, missing)
    blobs: dict[str, FileEntry] = {}
    for entry in pending:
        blobs.setdefault(entry.sha256, entry)  # two paths with the same bytes share one blob
    steps = [_step(entry, entry.sha256 in cold, missing) for entry in blobs.values()]
    unique = manifest.unique_chunks()
    return FillPlan(
        sources=network_order(tiers),
        fetches=_fetches_for(steps, missing),
        files=tuple(steps),
        bytes_present=sum(unique.values()) - sum(missing.values()),
        bytes_incoming=sum(missing.values()) + sum(entry.size for entry in pending),
        keep_chunks=keep_chunks,
    )
