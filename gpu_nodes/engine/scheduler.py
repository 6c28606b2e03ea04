"""Token-level continuous batching with chunked prefill and preemption by recompute.

Each step, within `max_num_batched_tokens`:
  1. prefill work first: running sequences still mid-prefill continue with their next chunk, then
     waiting sequences are admitted in arrival order while blocks and seats allow;
  2. then decodes (one token each) for running sequences whose prompt is fully computed.
When a decode needs a new KV block and none is free, the newest running sequence is preempted:
its blocks are freed and it goes back to the front of the waiting queue, to be recomputed later
(its generated tokens are kept, so it resumes where it stopped).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gpu_nodes.engine.block_manager import BlockManager
from gpu_nodes.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_new_tokens: int  # tokens computed this step, from seq.num_computed_tokens on

    @property
    def completes(self) -> bool:
        """True if after this chunk all tokens are computed, so a token is sampled."""
        return self.seq.num_computed_tokens + self.num_new_tokens == self.seq.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledSeq] = field(default_factory=list)
    preempted: list[Sequence] = field(default_factory=list)

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


class Scheduler:
    def __init__(
        self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int
    ) -> None:
        if max_num_seqs < 1 or max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be >= 1")
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order: newest last

    def add(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def remove(self, seq: Sequence) -> None:
        """Drop a sequence (finished or aborted) and release its blocks."""
        if seq in self.running:
            self.running.remove(seq)
            self.block_manager.free(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def schedule(self) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        budget = self._schedule_running_prefills(out, budget)
        budget = self._admit_waiting(out, budget)
        self._schedule_decodes(out, budget)
        return out

    def _schedule_running_prefills(self, out: SchedulerOutput, budget: int) -> int:
        for seq in self.running:
            if budget <= 0:
                break
            if seq.num_uncomputed_tokens > 1:
                chunk = min(seq.num_uncomputed_tokens, budget)
                out.scheduled.append(ScheduledSeq(seq, chunk))
                budget -= chunk
        return budget

    def _decode_block_reserve(self) -> int:
        """Blocks the running decodes need this step; admission leaves them free."""
        bm = self.block_manager
        return sum(
            1
            for s in self.running
            if s.num_uncomputed_tokens == 1 and len(s.block_table) < bm.blocks_needed(s.num_tokens)
        )

    def _admit_waiting(self, out: SchedulerOutput, budget: int) -> int:
        reserve = self._decode_block_reserve()
        for seq in list(self.waiting):
            if budget <= 0 or len(self.running) >= self.max_num_seqs:
                break
            if self.block_manager.waits_for_pending(seq):
                continue  # its prefix is being computed now: admit it next step, as a hit
            if not self.block_manager.can_allocate(seq, reserve=reserve):
                break  # FCFS: later requests wait behind the head
            self.waiting.remove(seq)
            self.block_manager.allocate(seq)
            seq.status = SequenceStatus.RUNNING
            if not seq.admitted_once:
                # Usage reports the prefix-cache hits of the first admission only.
                seq.admitted_once = True
                seq.prompt_cache_hit_tokens = seq.num_cached_tokens
            self.running.append(seq)
            chunk = min(seq.num_uncomputed_tokens, budget)
            out.scheduled.append(ScheduledSeq(seq, chunk))
            budget -= chunk
        return budget

    def _schedule_decodes(self, out: SchedulerOutput, budget: int) -> None:
        # Admitted this step with one token left (prefix-cache hit) is already scheduled.
        already = {id(s.seq) for s in out.scheduled}
        decoding = [
            s for s in self.running if s.num_uncomputed_tokens == 1 and id(s) not in already
        ]
        for seq in decoding:
            if budget <= 0 or seq.status is not SequenceStatus.RUNNING:
                continue
            while not self.block_manager.can_append_slot(seq):
                victim = self.running[-1]
                self._preempt(victim, out)
                if victim is seq:
                    break
            if seq.status is not SequenceStatus.RUNNING:
                continue
            self.block_manager.append_slot(seq)
            out.scheduled.append(ScheduledSeq(seq, 1))
            budget -= 1

    def _preempt(self, seq: Sequence, out: SchedulerOutput) -> None:
        self.running.remove(seq)
        out.scheduled = [s for s in out.scheduled if s.seq is not seq]
        self.block_manager.free(seq)
        seq.status = SequenceStatus.WAITING
        seq.num_preemptions += 1
        self.waiting.appendleft(seq)
        out.preempted.append(seq)
