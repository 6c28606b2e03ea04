"""Sampler: filtering semantics, bitmask layout, seeded draws."""

from __future__ import annotations

import pytest
import torch

from gpu_nodes.engine.detokenizer import IncrementalDetokenizer
from gpu_nodes.engine.sampler import allowed_from_bitmask, bitmask_width, sample
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.sequence import Sequence

LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.5, 2.9]])


def seq_with(params: SamplingParams) -> Sequence:
    return Sequence("s", [1], params, IncrementalDetokenizer(None, []), 0)


@pytest.mark.parametrize(
    ("params", "allowed"),
    [
        (SamplingParams(temperature=0), {1}),
        (SamplingParams(temperature=1.0, top_k=1), {1}),
        (SamplingParams(temperature=1.0, top_k=2), {1, 4}),
        (SamplingParams(temperature=1.0, top_p=0.01), {1}),
        (SamplingParams(temperature=1.0, top_p=0.6), {1, 4}),
        (SamplingParams(temperature=1.0), {0, 1, 2, 3, 4}),
    ],
)
def test_filters_limit_the_candidates(params: SamplingParams, allowed: set[int]) -> None:
    params.seed = 0
    seq = seq_with(params)
    drawn = {sample(LOGITS, [seq])[0].token_id for _ in range(200)}
    assert drawn <= allowed
    if params.temperature > 0 and len(allowed) > 1:
        assert len(drawn) > 1  # really sampling, not argmax


def test_seeded_draws_repeat() -> None:
    first = seq_with(SamplingParams(temperature=1.0, seed=42))
    second = seq_with(SamplingParams(temperature=1.0, seed=42))
    logits = torch.zeros((1, 50))
    a = [sample(logits, [first])[0].token_id for _ in range(20)]
    b = [sample(logits, [second])[0].token_id for _ in range(20)]
    assert a == b and len(set(a)) > 1


def test_bitmask_layout_matches_xgrammar() -> None:
    vocab = 70
    bitmask = torch.zeros((2, bitmask_width(vocab)), dtype=torch.int32)
    assert bitmask.shape == (2, 3)
    bitmask[0, 0] = 1 << 3  # token 3
    bitmask[0, 2] = 1 << 5  # token 69
    bitmask[1, 1] = -1  # tokens 32..63 (sign bit = token 63)
    allowed = allowed_from_bitmask(bitmask, vocab)
    assert allowed[0].nonzero().flatten().tolist() == [3, 69]
    assert allowed[1].nonzero().flatten().tolist() == list(range(32, 64))


def test_xgrammar_helpers_agree_with_our_unpacking() -> None:
    xgr = pytest.importorskip("xgrammar")
    vocab = 100
    bitmask = xgr.allocate_token_bitmask(1, vocab)
    bitmask.zero_()
    bitmask[0, 1] = (1 << 2) - (1 << 31)  # tokens 34 and 63 (bit 31 is the sign bit)
    logits = torch.zeros((1, vocab))
    xgr.apply_token_bitmask_inplace(logits, bitmask)
    expected = torch.isfinite(logits[0]).nonzero().flatten().tolist()
    assert allowed_from_bitmask(bitmask, vocab)[0].nonzero().flatten().tolist() == expected
    assert expected == [34, 63]
