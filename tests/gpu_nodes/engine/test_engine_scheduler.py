"""Scheduler tick sequences, driven without a model: each tick 'computes' what was scheduled."""

from __future__ import annotations

from gpu_nodes.engine.block_manager import BlockManager
from gpu_nodes.engine.detokenizer import IncrementalDetokenizer
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.scheduler import Scheduler
from gpu_nodes.engine.sequence import Sequence, SequenceStatus


def make_seq(name: str, prompt_len: int, first_token: int = 0) -> Sequence:
    tokens = list(range(first_token, first_token + prompt_len))
    return Sequence(name, tokens, SamplingParams(), IncrementalDetokenizer(None, []), 0)


def tick(sched: Scheduler) -> list[tuple[str, int]]:
    """Schedule one step and apply it like the engine does; return [(request_id, tokens)]."""
    plan = sched.schedule()
    for item in plan.scheduled:
        completes = item.completes
        item.seq.num_computed_tokens += item.num_new_tokens
        sched.block_manager.cache_computed_blocks(item.seq)
        if completes:
            item.seq.token_ids.append(1000 + item.seq.num_tokens)
    return [(s.seq.request_id, s.num_new_tokens) for s in plan.scheduled]


def make_scheduler(num_blocks: int = 64, block_size: int = 4, seqs: int = 8, budget: int = 64):
    return Scheduler(BlockManager(num_blocks, block_size), seqs, budget)


def test_prefill_runs_before_decodes() -> None:
    sched = make_scheduler()
    sched.add(make_seq("a", 5))
    assert tick(sched) == [("a", 5)]
    sched.add(make_seq("b", 7, first_token=100))
    assert tick(sched) == [("b", 7), ("a", 1)]
    assert tick(sched) == [("a", 1), ("b", 1)]


def test_token_budget_chunks_second_prompt() -> None:
    sched = make_scheduler(budget=10)
    sched.add(make_seq("a", 6))
    sched.add(make_seq("b", 6, first_token=100))
    assert tick(sched) == [("a", 6), ("b", 4)]
    # b's remaining prefill chunk comes first, then a's decode.
    assert tick(sched) == [("b", 2), ("a", 1)]
    assert tick(sched) == [("a", 1), ("b", 1)]


def test_chunked_prefill_of_long_prompt() -> None:
    sched = make_scheduler(budget=8)
    seq = make_seq("long", 25)
    sched.add(seq)
    assert [tick(sched) for _ in range(5)] == [
        [("long", 8)],
        [("long", 8)],
        [("long", 8)],
        [("long", 1)],  # the last prompt token completes the prefill and samples
        [("long", 1)],  # decode
    ]
    assert seq.num_tokens == 27


def test_budget_exhausted_by_prefill_delays_decodes() -> None:
    sched = make_scheduler(budget=8)
    sched.add(make_seq("a", 3))
    tick(sched)
    sched.add(make_seq("b", 20, first_token=100))
    assert tick(sched) == [("b", 8)]
    assert tick(sched) == [("b", 8)]
    assert tick(sched) == [("b", 4), ("a", 1)]


def test_max_num_seqs_limits_running() -> None:
    sched = make_scheduler(seqs=2)
    for i in range(3):
        sched.add(make_seq(f"s{i}", 3, first_token=10 * i))
    assert tick(sched) == [("s0", 3), ("s1", 3)]
    assert [s.request_id for s in sched.waiting] == ["s2"]
    finished = sched.running[0]
    sched.remove(finished)
    assert tick(sched) == [("s2", 3), ("s1", 1)]


def test_preemption_frees_newest_and_it_resumes_by_recompute() -> None:
    # 4 blocks of 2 tokens: two 3-token prompts take 2 blocks each.
    sched = make_scheduler(num_blocks=4, block_size=2, budget=64)
    a, b = make_seq("a", 3), make_seq("b", 3, first_token=50)
    sched.add(a)
    sched.add(b)
    assert tick(sched) == [("a", 3), ("b", 3)]  # both sample their 4th token
    assert tick(sched) == [("a", 1), ("b", 1)]  # 4th token fits their second block
    # Now both need a third block; none is free -> b (newest) is preempted.
    plan = sched.schedule()
    assert [s.seq.request_id for s in plan.scheduled] == ["a"]
    assert plan.preempted == [b]
    assert b.status is SequenceStatus.WAITING and b.block_table == []
    assert b.num_computed_tokens == 0 and b.num_tokens == 5  # generated tokens are kept
    assert sched.waiting[0] is b
    # a finishes; b is re-admitted: its first block is still in the prefix cache, the rest of
    # its 5 tokens (prompt + generated) are recomputed.
    a.num_computed_tokens += 1
    sched.remove(a)
    assert tick(sched) == [("b", 3)]
    assert b.status is SequenceStatus.RUNNING and b.num_cached_tokens == 2
    assert b.num_tokens == 6


def test_admission_waits_when_blocks_run_out() -> None:
    sched = make_scheduler(num_blocks=3, block_size=4)
    sched.add(make_seq("a", 8))
    sched.add(make_seq("b", 8, first_token=100))
    assert tick(sched) == [("a", 8)]
    assert [s.request_id for s in sched.waiting] == ["b"]


def test_admitted_with_one_token_left_is_scheduled_once() -> None:
    sched = make_scheduler(block_size=4)
    first = make_seq("a", 9)
    sched.add(first)
    tick(sched)
    sched.remove(first)
    sched.add(make_seq("b", 9))  # 8 tokens come from the prefix cache, 1 is left to compute
    assert tick(sched) == [("b", 1)]


def test_identical_prompts_share_prefix_by_waiting_one_step() -> None:
    sched = make_scheduler(block_size=4)
    a, b = make_seq("a", 10), make_seq("b", 10)
    sched.add(a)
    sched.add(b)
    assert tick(sched) == [("a", 10)]  # b waits: its prefix is being computed by a
    assert tick(sched) == [("b", 2), ("a", 1)]  # b reuses 8 cached tokens
    assert b.prompt_cache_hit_tokens == 8
