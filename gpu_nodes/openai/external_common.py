"""Shared by the vLLM and TensorRT-LLM adapters: both report cumulative text per request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gpu_nodes.engine.outputs import RequestOutput, TokenLogprob
from gpu_nodes.openai.engine_port import EngineSettings
from gpu_nodes.openai.exceptions import EngineUnavailable


def require_cuda(runtime: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise EngineUnavailable(f"{runtime} needs a CUDA device and none is visible on this node")


def load_tokenizer(settings: EngineSettings) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(settings.model_reference())


def structured_json(schema: dict[str, Any] | None) -> str:
    return json.dumps(schema if schema is not None else {"type": "object"})


@dataclass
class CumulativeToDelta:
    """Turns an engine's cumulative (text, token ids) into this port's delta outputs."""

    request_id: str
    prompt_tokens: int
    sent_chars: int = 0
    sent_tokens: int = 0

    def delta(
        self,
        text: str,
        token_ids: list[int],
        *,
        logprobs: list[TokenLogprob] | None,
        finish_reason: str | None,
        cached_prompt_tokens: int = 0,
    ) -> RequestOutput:
        new_text = text[self.sent_chars :]
        new_tokens = list(token_ids[self.sent_tokens :])
        self.sent_chars = len(text)
        self.sent_tokens = len(token_ids)
        return RequestOutput(
            request_id=self.request_id,
            text_delta=new_text,
            token_ids_delta=new_tokens,
            logprobs_delta=logprobs,
            finished=finish_reason is not None,
            finish_reason=normalise_finish_reason(finish_reason),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=len(token_ids),
            cached_prompt_tokens=cached_prompt_tokens,
        )


def normalise_finish_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    text = str(getattr(reason, "name", reason)).lower()
    if text in ("length", "stop", "abort"):
        return text
    return "abort" if "cancel" in text or "abort" in text else "stop"
