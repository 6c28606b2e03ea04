"""What a request asks of the sampler: length, randomness, stops, logprobs, and an optional guide
(a per-sequence token constraint, e.g. structured output compiled by the OpenAI layer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # only annotations: the OpenAI layer builds these without loading torch
    import torch


@runtime_checkable
class TokenGuide(Protocol):
    """Per-sequence constraint. The engine calls, for each decode step of a guided sequence:
    fill_bitmask(bitmask, row) BEFORE sampling (bitmask: int32 tensor [batch, ceil(vocab/32)] on
    CPU, xgrammar's layout: xgrammar.allocate_token_bitmask / apply_token_bitmask_inplace),
    then accept(token_id) AFTER sampling. is_terminated() True -> finish with reason "stop"."""

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None: ...

    def accept(self, token_id: int) -> bool: ...

    def is_terminated(self) -> bool: ...


@dataclass
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 1.0  # 0 -> greedy
    top_p: float = 1.0
    top_k: int = -1  # -1 -> off
    seed: int | None = None  # per-request torch.Generator -> reproducible
    stop: list[str] = field(default_factory=list)  # stop strings (not included in output)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # None: none; 0: chosen token's logprob; k: plus top-k
    guide: TokenGuide | None = None  # structured-output constraint (built over xgrammar)
