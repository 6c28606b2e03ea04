"""Adapter: the ``Engine`` port over TensorRT-LLM's ``LLM`` API (only on GPU nodes with it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gpu_nodes.engine.outputs import RequestOutput, TokenLogprob
from gpu_nodes.openai.engine_port import EngineSettings, GenerationParams, StructuredOutput
from gpu_nodes.openai.exceptions import EngineUnavailable
from gpu_nodes.openai.external_common import (
    CumulativeToDelta,
    load_tokenizer,
    require_cuda,
    structured_json,
)


def _import_trtllm() -> Any:
    try:
        import tensorrt_llm
    except ImportError:
        raise EngineUnavailable("tensorrt_llm is not installed on this node") from None
    return tensorrt_llm


def _as_float(logprob: Any) -> float:
    return float(getattr(logprob, "logprob", logprob) or 0.0)


def _logprobs(raw: Any, start: int, tokenizer: Any, token_ids: list[int]) -> list[TokenLogprob]:
    entries: list[TokenLogprob] = []
    for position, step in enumerate(raw[start:], start=start):
        token_id = token_ids[position]
        if isinstance(step, dict):  # {token_id: Logprob} with top-k alternatives
            chosen = step.get(token_id)
            value = _as_float(chosen)
            top = [(tid, tokenizer.decode([tid]), _as_float(lp)) for tid, lp in step.items()]
        else:
            value, top = float(step), []
        entries.append(TokenLogprob(token_id, tokenizer.decode([token_id]), value, top))
    return entries


class TrtLlmEngine:
    def __init__(self, settings: EngineSettings) -> None:
        trtllm = _import_trtllm()
        require_cuda("tensorrt_llm")
        self._trtllm = trtllm
        options: dict[str, Any] = {"guided_decoding_backend": "xgrammar"}
        if settings.max_model_len:
            options["max_seq_len"] = settings.max_model_len
        if settings.max_num_seqs:
            options["max_batch_size"] = settings.max_num_seqs
        if settings.max_num_batched_tokens:
            options["max_num_tokens"] = settings.max_num_batched_tokens
        self._llm = trtllm.LLM(model=settings.model_reference(), dtype=settings.dtype, **options)
        self.tokenizer: Any = load_tokenizer(settings)
        self.model_name: str = settings.model_reference().rstrip("/").rsplit("/", 1)[-1]
        self.max_model_len: int = int(settings.max_model_len or 2048)
        self._running: dict[str, Any] = {}

    def compile_structured(self, spec: StructuredOutput) -> None:
        structured_json(spec.schema)  # TensorRT-LLM compiles with xgrammar when the request runs

    def _sampling(self, params: GenerationParams) -> Any:
        guided = None
        if params.structured is not None:
            from tensorrt_llm.sampling_params import GuidedDecodingParams

            if params.structured.kind == "json_object":
                guided = GuidedDecodingParams(json_object=True)
            else:
                guided = GuidedDecodingParams(json=structured_json(params.structured.schema))
        wanted = params.sampling
        return self._trtllm.SamplingParams(
            max_tokens=wanted.max_tokens,
            temperature=wanted.temperature,
            top_p=wanted.top_p,
            top_k=wanted.top_k if wanted.top_k > 0 else None,
            seed=wanted.seed,
            stop=wanted.stop or None,
            stop_token_ids=wanted.stop_token_ids or None,
            ignore_eos=wanted.ignore_eos,
            logprobs=wanted.logprobs,
            guided_decoding=guided,
        )

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: GenerationParams
    ) -> AsyncIterator[RequestOutput]:
        result = self._llm.generate_async(
            prompt_token_ids, sampling_params=self._sampling(params), streaming=True
        )
        self._running[request_id] = result
        tracker = CumulativeToDelta(request_id, len(prompt_token_ids))
        try:
            async for partial in result:
                completion = partial.outputs[0]
                token_ids = list(completion.token_ids)
                start = tracker.sent_tokens
                raw = completion.logprobs if params.sampling.logprobs is not None else None
                yield tracker.delta(
                    completion.text,
                    token_ids,
                    logprobs=_logprobs(raw, start, self.tokenizer, token_ids) if raw else None,
                    finish_reason=completion.finish_reason if partial.finished else None,
                )
        finally:
            self._running.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        result = self._running.get(request_id)
        if result is not None:
            result.abort()

    def stats(self) -> None:
        return None  # the engine exports its own metrics

    def shutdown(self) -> None:
        self._llm.shutdown()
