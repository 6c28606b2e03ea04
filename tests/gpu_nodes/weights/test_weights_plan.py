"""The weight agent's planner, table by table and tick by tick (no I/O, no clock, no threads).

Chunks are named (``"w1"``) and sized in the tables; their hashes are the sha256 of the name, so
a table reads as "file A is w1 + w2" while the plan sees real-looking digests.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from gpu_nodes.weights.plan import (
    ChunkFetch,
    FileAction,
    FillPlan,
    NodeView,
    Tier,
    network_order,
    plan_fill,
)
from plinth.contracts.weights_manifest import ChunkRef, FileEntry, Manifest

IN_PLACE, ASSEMBLE = FileAction.IN_PLACE, FileAction.ASSEMBLE
SIZES = {"hdr": 8, "w1": 100, "w2": 100, "w3": 100, "w4": 100, "w2x": 100, "cfg": 10}


def h(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def entry(path: str, *chunks: str) -> FileEntry:
    refs, offset = [], 0
    for name in chunks:
        refs.append(ChunkRef(h(name), offset, SIZES[name]))
        offset += SIZES[name]
    return FileEntry(path, offset, h("file:" + "+".join(chunks)), tuple(refs))


def manifest(*files: FileEntry) -> Manifest:
    return Manifest(source="hf://acme/tiny", mount_location="/m", files=files)


SHARD_A = entry("a.safetensors", "hdr", "w1", "w2")
SHARD_B = entry("b.safetensors", "w3", "w4")
CONFIG = entry("config.json", "cfg")
BASE = manifest(SHARD_A, SHARD_B, CONFIG)
# The fine-tune changed one tensor of shard A (w2 -> w2x); shard B and the config are identical.
TUNED_A = entry("a.safetensors", "hdr", "w1", "w2x")
TUNED = manifest(TUNED_A, SHARD_B, CONFIG)


def node(files: tuple[FileEntry, ...] = (), chunks: tuple[str, ...] = ()) -> NodeView:
    """A node holding these published blobs (and so their chunks) plus loose chunks."""
    held = {ref.hash for f in files for ref in f.chunks} | {h(c) for c in chunks}
    return NodeView(files=frozenset(f.sha256 for f in files), chunks=frozenset(held))


def steps(plan: FillPlan) -> dict[str, tuple[FileAction, list[str], list[str]]]:
    names = {h(n): n for n in SIZES}
    return {
        s.entry.path: (s.action, [names[c] for c in s.reused], [names[c] for c in s.fetched])
        for s in plan.files
    }


def fetched(plan: FillPlan) -> list[str]:
    names = {h(n): n for n in SIZES}
    return [names[f.hash] for f in plan.fetches]


@pytest.mark.parametrize(
    ("case", "target", "view", "keep_chunks", "files", "fetches", "present", "to_fetch"),
    [
        (
            "cold node: every file is downloaded in place, nothing through chunks/",
            BASE,
            node(),
            False,
            {
                "a.safetensors": (IN_PLACE, [], ["hdr", "w1", "w2"]),
                "b.safetensors": (IN_PLACE, [], ["w3", "w4"]),
                "config.json": (IN_PLACE, [], ["cfg"]),
            },
            [],
            0,
            418,
        ),
        (
            "cold node with keep_chunks: every file assembled from fetched chunks",
            BASE,
            node(),
            True,
            {
                "a.safetensors": (ASSEMBLE, [], ["hdr", "w1", "w2"]),
                "b.safetensors": (ASSEMBLE, [], ["w3", "w4"]),
                "config.json": (ASSEMBLE, [], ["cfg"]),
            },
            ["hdr", "w1", "w2", "w3", "w4", "cfg"],
            0,
            418,
        ),
        ("warm node: nothing to do", BASE, node(BASE.files), False, {}, [], 418, 0),
        (
            "partial resume: a killed agent left w1 in chunks/, the rest is fetched",
            BASE,
            node((SHARD_B, CONFIG), chunks=("w1",)),
            False,
            {"a.safetensors": (ASSEMBLE, ["w1"], ["hdr", "w2"])},
            ["hdr", "w2"],
            310,
            108,
        ),
        (
            "fine-tune of a cached base: only the changed tensor crosses the network",
            TUNED,
            node(BASE.files),
            False,
            {"a.safetensors": (ASSEMBLE, ["hdr", "w1"], ["w2x"])},
            ["w2x"],
            318,
            100,
        ),
        (
            "fine-tune on a cold node: each file still downloaded in place",
            TUNED,
            node(),
            False,
            {
                "a.safetensors": (IN_PLACE, [], ["hdr", "w1", "w2x"]),
                "b.safetensors": (IN_PLACE, [], ["w3", "w4"]),
                "config.json": (IN_PLACE, [], ["cfg"]),
            },
            [],
            0,
            418,
        ),
    ],
)
def test_plan(
    case: str,
    target: Manifest,
    view: NodeView,
    keep_chunks: bool,
    files: dict[str, tuple[FileAction, list[str], list[str]]],
    fetches: list[str],
    present: int,
    to_fetch: int,
) -> None:
    plan = plan_fill(target, view, tiers={Tier.ORIGIN}, keep_chunks=keep_chunks)
    assert steps(plan) == files, case
    assert fetched(plan) == fetches, case
    assert plan.bytes_present == present, case
    assert plan.bytes_to_fetch == to_fetch, case
    assert plan.keep_chunks is keep_chunks


def test_chunks_shared_between_pending_files_are_fetched_once_and_assembled() -> None:
    # Two new files share w2: neither is cold, so both are assembled from chunks/ and w2 is
    # downloaded once. The third file shares nothing and is downloaded in place.
    first = entry("first.bin", "w1", "w2")
    second = entry("second.bin", "w2", "w3")
    alone = entry("alone.bin", "w4")
    plan = plan_fill(manifest(first, second, alone), node(), tiers={Tier.ORIGIN}, keep_chunks=False)
    assert steps(plan) == {
        "first.bin": (ASSEMBLE, [], ["w1", "w2"]),
        "second.bin": (ASSEMBLE, [], ["w2", "w3"]),
        "alone.bin": (IN_PLACE, [], ["w4"]),
    }
    assert plan.fetches == (
        ChunkFetch(h("w1"), 100),
        ChunkFetch(h("w2"), 100),
        ChunkFetch(h("w3"), 100),
    )
    assert plan.bytes_to_fetch == 400
    assert plan.bytes_incoming == 400 + first.size + second.size + alone.size


def test_same_bytes_at_two_paths_build_one_blob_and_a_repeated_chunk_is_fetched_once() -> None:
    twice = entry("tokenizer.bin", "w1", "w1")
    copy = dataclasses.replace(twice, path="nested/copy.bin")
    empty = FileEntry("empty.txt", 0, hashlib.sha256(b"").hexdigest(), ())
    plan = plan_fill(manifest(twice, copy, empty), node(), tiers={Tier.ORIGIN}, keep_chunks=False)
    assert steps(plan) == {
        "tokenizer.bin": (IN_PLACE, [], ["w1"]),
        "empty.txt": (IN_PLACE, [], []),
    }
    assert plan.bytes_to_fetch == 100
    # Room is made for each path's bytes, as the blob is linked (not copied) only after the fill.
    assert plan.bytes_incoming == 100 + 200 + 200


@pytest.mark.parametrize(
    ("configured", "order"),
    [
        ({Tier.CLUSTER, Tier.ORIGIN}, (Tier.CLUSTER, Tier.ORIGIN)),
        ([Tier.ORIGIN, Tier.CLUSTER], (Tier.CLUSTER, Tier.ORIGIN)),
        ({Tier.ORIGIN}, (Tier.ORIGIN,)),
        ({Tier.CLUSTER}, (Tier.CLUSTER,)),
        (set(), ()),
    ],
)
def test_network_tiers_are_asked_cluster_cache_first(
    configured: set[Tier], order: tuple[Tier, ...]
) -> None:
    assert network_order(configured) == order
    cold = plan_fill(BASE, node(), tiers=configured, keep_chunks=False)
    warm = plan_fill(BASE, node(BASE.files), tiers=configured, keep_chunks=False)
    assert cold.sources == warm.sources == order
    assert not warm.files and warm.bytes_to_fetch == 0  # a warm node needs no tier at all


def test_tick_by_tick_a_fill_that_stopped_half_way_is_planned_again_for_the_rest() -> None:
    """Each tick: observe, plan, apply part of the plan (as a fill killed mid-way would)."""
    view = node()
    first = plan_fill(TUNED, view, tiers={Tier.CLUSTER, Tier.ORIGIN}, keep_chunks=True)
    assert fetched(first) == ["hdr", "w1", "w2x", "w3", "w4", "cfg"]
    # Tick 1 applied: hdr and w1 arrived in chunks/, then the agent was killed.
    view = node(chunks=("hdr", "w1"))
    second = plan_fill(TUNED, view, tiers={Tier.CLUSTER, Tier.ORIGIN}, keep_chunks=False)
    assert steps(second) == {
        "a.safetensors": (ASSEMBLE, ["hdr", "w1"], ["w2x"]),
        "b.safetensors": (IN_PLACE, [], ["w3", "w4"]),
        "config.json": (IN_PLACE, [], ["cfg"]),
    }
    assert fetched(second) == ["w2x"]
    assert second.bytes_present == 108
    # Tick 2 applied: shard A published; shard B and the config still missing.
    view = node((TUNED_A,))
    third = plan_fill(TUNED, view, tiers={Tier.CLUSTER, Tier.ORIGIN}, keep_chunks=False)
    assert set(steps(third)) == {"b.safetensors", "config.json"}
    assert third.bytes_present == 208  # shard A: hdr + w1 + w2x
    # Tick 3 applied: everything published; the next plan is empty.
    done = plan_fill(TUNED, node(TUNED.files), tiers={Tier.ORIGIN}, keep_chunks=False)
    assert done.files == () and done.fetches == () and done.bytes_present == 418
    assert done.bytes_incoming == 0
