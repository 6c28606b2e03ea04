"""Paged KV-cache block allocation with prefix caching.

Each full block of a sequence is identified by a chained hash: hash(parent_hash, block tokens), so
equal hashes mean equal whole prefixes. Blocks are registered in the prefix cache only once their
K/V have been computed (with chunked prefill a block may be allocated steps before it is filled).
Blocks whose reference count drops to zero go to an LRU of free blocks; those still holding a
cached prefix stay findable there until the space is needed, and the least recently freed block is
evicted first. Blocks of a sequence are freed tail first, so a shared head outlives its tails.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from gpu_nodes.engine.sequence import Sequence

NO_HASH = -1


def chain_hash(parent_hash: int, tokens: list[int] | tuple[int, ...]) -> int:
    return hash((parent_hash, tuple(tokens)))


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    block_hash: int = NO_HASH
    token_ids: tuple[int, ...] = field(default_factory=tuple)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        if num_blocks < 1 or block_size < 1:
            raise ValueError(
                f"num_blocks ({num_blocks}) and block_size ({block_size}) must be >= 1"
            )
        self.block_size = block_size
        self.num_blocks = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        # block_id -> None, oldest (evicted first) at the front.
        self.free_blocks: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        # Hashes of full blocks allocated to a sequence but not computed yet -> how many
        # sequences are computing them. A request whose prefix is pending waits a step to reuse
        # it instead of computing a duplicate (e.g. the n choices of one prompt).
        self.pending: dict[int, int] = {}

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    def blocks_needed(self, num_tokens: int) -> int:
        return (num_tokens + self.block_size - 1) // self.block_size

    # ---- prefix lookup -------------------------------------------------------------------
    def _cacheable_prefix_hashes(self, seq: Sequence) -> list[tuple[int, tuple[int, ...]]]:
        """(hash, tokens) of the full blocks that may come from the cache.

        The last token is always recomputed (its logits are needed), so a block is only
        reusable when it ends strictly before the final token.
        """
        if not self.enable_prefix_caching:
            return []
        bs = self.block_size
        result: list[tuple[int, tuple[int, ...]]] = []
        parent = NO_HASH
        for i in range((seq.num_tokens - 1) // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            parent = chain_hash(parent, tokens)
            result.append((parent, tokens))
        return result

    def _lookup(self, block_hash: int, tokens: tuple[int, ...]) -> int | None:
        block_id = self.hash_to_block.get(block_hash)
        if block_id is None or self.blocks[block_id].token_ids != tokens:
            return None
        return block_id

    def waits_for_pending(self, seq: Sequence) -> bool:
        """True if the block right after seq's cached prefix is being computed by another
        sequence, so admitting seq a step later turns that block into a cache hit."""
        if not self.pending:
            return False
        for block_hash, tokens in self._cacheable_prefix_hashes(seq):
            if self._lookup(block_hash, tokens) is None:
                return block_hash in self.pending
        return False

    def _prefix_hits(self, seq: Sequence) -> list[int]:
        hits: list[int] = []
        for block_hash, tokens in self._cacheable_prefix_hashes(seq):
            block_id = self._lookup(block_hash, tokens)
            if block_id is None:
                break
            hits.append(block_id)
        return hits

    # ---- allocation ----------------------------------------------------------------------
    def can_allocate(self, seq: Sequence, reserve: int = 0) -> bool:
        """True if all blocks for seq's current tokens fit, keeping `reserve` blocks free."""
        hits = self._prefix_hits(seq)
        hits_in_free = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        misses = self.blocks_needed(seq.num_tokens) - len(hits)
        return self.num_free_blocks - hits_in_free - misses >= reserve

    def _take_free_block(self) -> int:
        if not self.free_blocks:
            raise RuntimeError("no free KV-cache block (callers must check can_allocate first)")
        block_id, _ = self.free_blocks.popitem(last=False)
        block = self.blocks[block_id]
        if block.block_hash != NO_HASH and self.hash_to_block.get(block.block_hash) == block_id:
            del self.hash_to_block[block.block_hash]  # evict its cached prefix
        block.block_hash = NO_HASH
        block.token_ids = ()
        block.ref_count = 1
        return block_id

    def allocate(self, seq: Sequence) -> None:
        """Give seq a block table covering its tokens, reusing cached prefix blocks."""
        if seq.block_table:
            raise RuntimeError(f"sequence {seq.request_id} already has blocks")
        hits = self._prefix_hits(seq)
        for block_id in hits:
            block = self.blocks[block_id]
            if block.ref_count == 0:
                del self.free_blocks[block_id]
            block.ref_count += 1
        seq.block_table = list(hits)
        seq.block_hashes = [self.blocks[b].block_hash for b in hits]
        seq.num_hashed_blocks = len(hits)
        for _ in range(self.blocks_needed(seq.num_tokens) - len(hits)):
            seq.block_table.append(self._take_free_block())
        seq.num_cached_tokens = len(hits) * self.block_size
        seq.num_computed_tokens = seq.num_cached_tokens
        if self.enable_prefix_caching:
            seq.pending_hashes = [h for h, _ in self._cacheable_prefix_hashes(seq)[len(hits) :]]
            for block_hash in seq.pending_hashes:
                self.pending[block_hash] = self.pending.get(block_hash, 0) + 1

    def _drop_pending(self, seq: Sequence, count: int | None = None) -> None:
        """Forget the first `count` (default: all) of seq's pending hashes, in block order."""
        done = seq.pending_hashes if count is None else seq.pending_hashes[:count]
        for block_hash in done:
            left = self.pending.get(block_hash, 0) - 1
            if left > 0:
                self.pending[block_hash] = left
            else:
                self.pending.pop(block_hash, None)
        seq.pending_hashes = seq.pending_hashes[len(done) :]

    def can_append_slot(self, seq: Sequence) -> bool:
        return (
            len(seq.block_table) >= self.blocks_needed(seq.num_tokens) or self.num_free_blocks > 0
        )

    def append_slot(self, seq: Sequence) -> None:
        """Make sure seq's block table has room for all its tokens (one new block at most)."""
        while len(seq.block_table) < self.blocks_needed(seq.num_tokens):
            seq.block_table.append(self._take_free_block())

    def cache_computed_blocks(self, seq: Sequence) -> None:
        """Register the full blocks whose K/V are now computed in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        num_full = min(seq.num_computed_tokens // bs, len(seq.block_table))
        parent = seq.block_hashes[-1] if seq.block_hashes else NO_HASH
        for i in range(seq.num_hashed_blocks, num_full):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            parent = chain_hash(parent, tokens)
            seq.block_hashes.append(parent)
            block = self.blocks[seq.block_table[i]]
            if parent not in self.hash_to_block:
                block.block_hash = parent
                block.token_ids = tokens
                self.hash_to_block[parent] = block.block_id
        if num_full > seq.num_hashed_blocks:
            self._drop_pending(seq, num_full - seq.num_hashed_blocks)
        seq.num_hashed_blocks = max(seq.num_hashed_blocks, num_full)

    def free(self, seq: Sequence) -> None:
        """Release seq's blocks, tail first; cached ones stay reusable until evicted."""
        self._drop_pending(seq)
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.block_hash == NO_HASH:
                    # Nothing to reuse: put it at the front so it is taken before cached blocks.
                    self.free_blocks[block_id] = None
                    self.free_blocks.move_to_end(block_id, last=False)
                else:
                    self.free_blocks[block_id] = None
        seq.block_table = []
        seq.block_hashes = []
        seq.num_hashed_blocks = 0
        seq.num_computed_tokens = 0
