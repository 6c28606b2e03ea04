"""Block manager: allocation, prefix hits, eviction order, reference counts, free."""

from __future__ import annotations

import pytest

from gpu_nodes.engine.block_manager import NO_HASH, BlockManager
from gpu_nodes.engine.detokenizer import IncrementalDetokenizer
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.sequence import Sequence


def make_seq(tokens: list[int], name: str = "s") -> Sequence:
    return Sequence(name, list(tokens), SamplingParams(), IncrementalDetokenizer(None, []), 0)


def compute_all(bm: BlockManager, seq: Sequence) -> None:
    """Pretend the model computed every token, then register full blocks in the cache."""
    seq.num_computed_tokens = seq.num_tokens
    bm.cache_computed_blocks(seq)


@pytest.mark.parametrize(
    ("num_tokens", "blocks_needed"),
    [(1, 1), (4, 1), (5, 2), (8, 2), (9, 3), (16, 4)],
)
def test_allocation_covers_tokens(num_tokens: int, blocks_needed: int) -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    seq = make_seq(list(range(num_tokens)))
    assert bm.can_allocate(seq)
    bm.allocate(seq)
    assert len(seq.block_table) == blocks_needed
    assert len(set(seq.block_table)) == blocks_needed
    assert bm.num_free_blocks == 8 - blocks_needed
    assert seq.num_cached_tokens == 0


def test_cannot_allocate_beyond_capacity_or_reserve() -> None:
    bm = BlockManager(num_blocks=3, block_size=4)
    assert not bm.can_allocate(make_seq(list(range(13))))  # needs 4 blocks
    assert bm.can_allocate(make_seq(list(range(12))))
    assert not bm.can_allocate(make_seq(list(range(12))), reserve=1)


@pytest.mark.parametrize(
    ("first", "second", "expected_hit_tokens"),
    [
        (list(range(12)), [*list(range(12)), 99], 12),  # full shared prefix
        (list(range(12)), list(range(12)), 8),  # last token always recomputed
        (list(range(12)), [*list(range(8)), 50, 51, 52, 53, 54], 8),  # diverges in block 3
        (list(range(12)), [7, *range(1, 12)], 0),  # differs in first block
        (list(range(6)), list(range(10)), 4),  # partial block never cached
        # A cached block's tokens at another position (another parent) are not a hit: its K/V
        # were computed at positions 4-7 after tokens 0-3.
        (list(range(12)), [4, 5, 6, 7, 99], 0),
        (list(range(12)), [9, 9, 9, 9, 4, 5, 6, 7, 99], 0),
        (list(range(12)), [0, 1, 2, 3, 8, 9, 10, 11, 99], 4),  # block 3 after block 1's place
    ],
)
def test_prefix_hits(first: list[int], second: list[int], expected_hit_tokens: int) -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_seq(first, "a")
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(second, "b")
    bm.allocate(b)
    assert b.num_cached_tokens == expected_hit_tokens
    assert b.num_computed_tokens == expected_hit_tokens
    shared = expected_hit_tokens // 4
    assert b.block_table[:shared] == a.block_table[:shared]
    for block_id in a.block_table[:shared]:
        assert bm.blocks[block_id].ref_count == 2


def test_blocks_not_cached_before_computed() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_seq(list(range(12)), "a")
    bm.allocate(a)  # allocated, K/V not computed yet (e.g. waiting for its prefill chunk)
    b = make_seq([*list(range(12)), 1], "b")
    bm.allocate(b)
    assert b.num_cached_tokens == 0
    a.num_computed_tokens = 5  # first chunk done: only block 0 is full and computed
    bm.cache_computed_blocks(a)
    c = make_seq([*list(range(12)), 2], "c")
    bm.allocate(c)
    assert c.num_cached_tokens == 4


def test_free_keeps_cached_blocks_reusable_and_refcounts() -> None:
    bm = BlockManager(num_blocks=8, block_size=4)
    a = make_seq(list(range(9)), "a")
    bm.allocate(a)
    compute_all(bm, a)
    table = list(a.block_table)
    bm.free(a)
    assert bm.num_free_blocks == 8
    assert all(bm.blocks[b].ref_count == 0 for b in table)
    assert bm.blocks[table[0]].block_hash != NO_HASH
    assert bm.blocks[table[2]].block_hash == NO_HASH  # the partial block is not cached
    b = make_seq([*list(range(8)), 42], "b")
    bm.allocate(b)
    assert b.block_table[:2] == table[:2]
    assert b.num_cached_tokens == 8
    assert bm.num_free_blocks == 8 - 3


def test_eviction_order_uncached_first_then_lru_tail_first() -> None:
    bm = BlockManager(num_blocks=6, block_size=2)
    a = make_seq([1, 2, 3, 4, 5], "a")  # blocks: [1,2] [3,4] [5]
    bm.allocate(a)
    compute_all(bm, a)
    a_table = list(a.block_table)
    bm.free(a)
    # Free order: the uncached partial block goes first, then cached blocks tail first.
    order = list(bm.free_blocks)
    untouched = [b for b in order if b not in a_table]
    assert order[0] == a_table[2]
    assert order.index(a_table[1]) < order.index(a_table[0])
    # Take blocks one by one (a fresh unrelated sequence): a's head block is evicted last.
    big = make_seq(list(range(100, 110)), "big")  # needs 5 blocks out of 6
    bm.allocate(big)
    assert set(big.block_table) == set(untouched) | {a_table[2], a_table[1]}
    bm.free(big)
    survivor = make_seq([1, 2, 3], "again")
    bm.allocate(survivor)
    assert survivor.num_cached_tokens == 2 and survivor.block_table[0] == a_table[0]


def test_evicted_prefix_is_no_longer_a_hit() -> None:
    bm = BlockManager(num_blocks=2, block_size=2)
    a = make_seq([1, 2, 3], "a")
    bm.allocate(a)
    compute_all(bm, a)
    bm.free(a)
    other = make_seq([7, 8, 9, 10], "o")
    bm.allocate(other)  # takes both blocks, evicting a's cached block
    bm.free(other)
    again = make_seq([1, 2, 3], "again")
    bm.allocate(again)
    assert again.num_cached_tokens == 0


def test_append_slot_allocates_on_block_boundary() -> None:
    bm = BlockManager(num_blocks=4, block_size=4)
    seq = make_seq([1, 2, 3, 4], "s")
    bm.allocate(seq)
    assert len(seq.block_table) == 1
    seq.token_ids.append(5)  # sampled token needs slot 4 -> second block
    assert bm.can_append_slot(seq)
    bm.append_slot(seq)
    assert len(seq.block_table) == 2
    seq.token_ids.append(6)
    bm.append_slot(seq)
    assert len(seq.block_table) == 2
    assert bm.num_free_blocks == 2


def test_prefix_caching_disabled_never_hits() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=False)
    a = make_seq(list(range(9)), "a")
    bm.allocate(a)
    compute_all(bm, a)
    b = make_seq(list(range(9)), "b")
    bm.allocate(b)
    assert b.num_cached_tokens == 0
    assert not set(a.block_table) & set(b.block_table)


def test_pending_prefix_is_waited_for_then_hit() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_seq(list(range(10)), "a")
    bm.allocate(a)  # blocks 0-1 are full and will be computed by a's prefill
    twin = make_seq(list(range(10)), "twin")
    unrelated = make_seq([50, *range(1, 10)], "u")
    assert bm.waits_for_pending(twin)
    assert not bm.waits_for_pending(unrelated)
    compute_all(bm, a)
    assert not bm.waits_for_pending(twin) and bm.pending == {}
    bm.allocate(twin)
    assert twin.num_cached_tokens == 8


def test_freeing_uncomputed_sequence_clears_pending() -> None:
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_seq(list(range(10)), "a")
    bm.allocate(a)
    bm.free(a)  # e.g. preempted before its prefill ran
    assert bm.pending == {}
    assert not bm.waits_for_pending(make_seq(list(range(10)), "twin"))


def test_block_hash_is_chained_on_the_parent_block() -> None:
    """Equal hashes must mean equal whole prefixes, not just equal block tokens."""
    bm = BlockManager(num_blocks=16, block_size=4)
    a = make_seq([*range(12), 99], "a")
    bm.allocate(a)
    compute_all(bm, a)
    moved = make_seq([4, 5, 6, 7, 8, 9, 10, 11, 99], "moved")  # a's blocks 1-2, one place left
    bm.allocate(moved)
    compute_all(bm, moved)
    assert moved.num_cached_tokens == 0
    assert not set(a.block_hashes) & set(moved.block_hashes)
    assert not set(a.block_table) & set(moved.block_table)
    # The same tokens after the same prefix hash the same again.
    again = make_seq([*range(8), 50, 51], "again")
    bm.allocate(again)
    assert again.block_hashes == a.block_hashes[:2] and again.num_cached_tokens == 8
