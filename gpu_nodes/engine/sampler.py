"""Turns the step's logits into tokens: guide bitmask, temperature, top-k, top-p, greedy or
seeded sampling, and logprobs of the raw model distribution."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.sequence import Sequence


@dataclass
class SampleResult:
    token_id: int
    logprob: float | None  # chosen token's logprob (raw distribution) when requested
    top: list[tuple[int, float]]  # top-k (token_id, logprob) when requested
    guide_error: str | None = None  # the request's TokenGuide raised; the engine aborts it


def bitmask_width(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def allowed_from_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Unpack xgrammar's int32 bitmask [B, ceil(V/32)] into bool [B, V] (bit set = allowed)."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab_size].bool()


def _apply_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the mass before it already reaches top_p (keeps at least one).
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _sample_row(logits: torch.Tensor, params: SamplingParams, seq: Sequence) -> int:
    if params.temperature == 0:
        return int(torch.argmax(logits))
    scaled = _apply_top_k_top_p(logits / params.temperature, params.top_k, params.top_p)
    probs = scaled.softmax(-1)
    return int(torch.multinomial(probs, 1, generator=seq.generator))


def sample(logits: torch.Tensor, seqs: list[Sequence]) -> list[SampleResult]:
    """Sample one token per row of float32 logits [len(seqs), V]."""
    logits = logits.cpu()
    masked, guide_errors = _apply_guides(logits, seqs)
    want_logprobs = [s.params.logprobs is not None for s in seqs]
    logprobs = torch.log_softmax(logits, dim=-1) if any(want_logprobs) else None
    greedy_rows = [i for i, s in enumerate(seqs) if s.params.temperature == 0]
    greedy_tokens = masked[greedy_rows].argmax(-1).tolist() if greedy_rows else []
    chosen: dict[int, int] = dict(zip(greedy_rows, greedy_tokens, strict=True))
    results: list[SampleResult] = []
    for i, seq in enumerate(seqs):
        token = chosen[i] if i in chosen else _sample_row(masked[i], seq.params, seq)
        logprob: float | None = None
        top: list[tuple[int, float]] = []
        if logprobs is not None and seq.params.logprobs is not None:
            logprob = float(logprobs[i, token])
            if seq.params.logprobs > 0:
                values, ids = torch.topk(logprobs[i], seq.params.logprobs)
                top = list(zip(ids.tolist(), values.tolist(), strict=True))
        results.append(SampleResult(token, logprob, top, guide_errors.get(i)))
    return results


def _apply_guides(
    logits: torch.Tensor, seqs: list[Sequence]
) -> tuple[torch.Tensor, dict[int, str]]:
    """Mask disallowed tokens of guided rows; a guide that raises only fails its own row."""
    guided = [i for i, s in enumerate(seqs) if s.params.guide is not None]
    errors: dict[int, str] = {}
    if not guided:
        return logits, errors
    vocab = logits.shape[-1]
    bitmask = torch.full((len(seqs), bitmask_width(vocab)), -1, dtype=torch.int32)
    for i in guided:
        guide = seqs[i].params.guide
        assert guide is not None
        try:
            guide.fill_bitmask(bitmask, i)
        except Exception as exc:
            errors[i] = f"{type(exc).__name__}: {exc}"
            bitmask[i] = -1
    allowed = allowed_from_bitmask(bitmask, vocab)
    # A row with nothing allowed would sample from NaNs: treat it as a guide error.
    for i in guided:
        if i not in errors and not bool(allowed[i].any()):
            errors[i] = "the guide allows no token"
            allowed[i] = True
    return logits.masked_fill(~allowed, float("-inf")), errors
