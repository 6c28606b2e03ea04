"""Per-request state: tokens, block table, progress counters, status and sampling state."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from gpu_nodes.engine.detokenizer import IncrementalDetokenizer
from gpu_nodes.engine.sampling_params import SamplingParams


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass
class Sequence:
    """One request inside the engine.

    `token_ids` holds prompt + generated tokens. `num_computed_tokens` counts tokens whose K/V are
    in the paged cache; a step computes tokens [num_computed_tokens, num_tokens) (or a chunk of
    them) and samples a new token once all are computed.
    """

    request_id: str
    token_ids: list[int]
    params: SamplingParams
    detokenizer: IncrementalDetokenizer
    arrival: int
    num_prompt_tokens: int = 0
    block_table: list[int] = field(default_factory=list)
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # tokens served from the prefix cache at the latest admission
    prompt_cache_hit_tokens: int = 0  # prompt tokens served from the cache at first admission
    num_hashed_blocks: int = 0  # leading blocks already registered in the prefix cache
    block_hashes: list[int] = field(default_factory=list)
    pending_hashes: list[int] = field(default_factory=list)  # allocated, not yet computed
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: str | None = None
    generator: torch.Generator | None = None
    num_preemptions: int = 0
    admitted_once: bool = False

    def __post_init__(self) -> None:
        if self.num_prompt_tokens == 0:
            self.num_prompt_tokens = len(self.token_ids)
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_completion_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def completion_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def num_blocks_for(self, num_tokens: int, block_size: int) -> int:
        return (num_tokens + block_size - 1) // block_size
