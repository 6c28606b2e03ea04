"""Public API of Plinth's built-in LLM engine (shared contract with the OpenAI layer).

The dataclasses and the ``TokenGuide`` protocol live here; ``LLMEngine`` and ``AsyncLLMEngine``
are implemented in ``gpu_nodes.engine.engine`` and re-exported lazily (importing them here
eagerly would create an import cycle, since the engine itself imports these dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from gpu_nodes.engine.engine import AsyncLLMEngine, LLMEngine

__all__ = [
    "AsyncLLMEngine",
    "EngineConfig",
    "LLMEngine",
    "RequestOutput",
    "SamplingParams",
    "TokenGuide",
    "TokenLogprob",
]


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


@dataclass
class TokenLogprob:
    token_id: int
    token: str  # decoded text of this token
    logprob: float
    top: list[tuple[int, str, float]]  # (token_id, text, logprob), length = params.logprobs


@dataclass
class RequestOutput:
    request_id: str
    text_delta: str  # newly decoded text since the previous output (stop strings removed)
    token_ids_delta: list[int]
    logprobs_delta: list[TokenLogprob] | None
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" | None
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int  # prefix-cache hits, for usage.prompt_tokens_details


@dataclass
class EngineConfig:
    model_path: str
    device: str = "auto"  # auto -> cuda if available else cpu
    dtype: str = "auto"  # float32 on cpu, bfloat16 on cuda
    block_size: int = 16
    num_blocks: int | None = None  # None -> derived from a memory budget
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 2048  # per-step token budget (chunked prefill)
    max_model_len: int | None = None
    enable_prefix_caching: bool = True


def __getattr__(name: str) -> Any:
    # Lazy re-export: `from gpu_nodes.engine.api import LLMEngine` works without an import cycle.
    if name in ("LLMEngine", "AsyncLLMEngine"):
        from gpu_nodes.engine import engine as engine_module

        return getattr(engine_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
