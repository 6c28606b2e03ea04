"""What the engine streams back per request: text and token deltas, logprobs, finish, usage."""

from __future__ import annotations

from dataclasses import dataclass


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
