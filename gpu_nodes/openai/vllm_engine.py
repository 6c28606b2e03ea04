"""Adapter: the ``Engine`` port over vLLM's ``AsyncLLMEngine`` (only on GPU nodes with vllm)."""

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


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise EngineUnavailable("vllm is not installed on this node") from None
    return vllm


def _structured_kwargs(vllm: Any, spec: StructuredOutput | None) -> dict[str, Any]:
    if spec is None:
        return {}
    schema = structured_json(spec.schema if spec.kind == "json_schema" else None)
    try:  # vLLM >= 0.10.2
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


def _logprobs(
    raw: Any, start: int, token_ids: list[int], tokenizer: Any, top_k: int
) -> list[TokenLogprob] | None:
    """vLLM gives, per generated token, {token_id: Logprob(logprob, rank, decoded_token)}
    holding the sampled token and the top-k alternatives (rank 1 = most likely)."""
    if raw is None:
        return None
    entries: list[TokenLogprob] = []
    for position in range(start, len(raw)):
        step = raw[position]
        chosen_id = token_ids[position]
        chosen = step[chosen_id]
        ranked = sorted(
            ((tid, lp) for tid, lp in step.items() if lp.rank is not None),
            key=lambda item: item[1].rank,
        )
        top = [
            (tid, lp.decoded_token or tokenizer.decode([tid]), float(lp.logprob))
            for tid, lp in ranked[:top_k]  # the sampled token is added when outside the top k
        ]
        text = chosen.decoded_token or tokenizer.decode([chosen_id])
        entries.append(TokenLogprob(chosen_id, text, float(chosen.logprob), top))
    return entries


class VllmEngine:
    def __init__(self, settings: EngineSettings) -> None:
        vllm = _import_vllm()
        require_cuda("vllm")
        self._vllm = vllm
        args = vllm.AsyncEngineArgs(
            model=settings.model_reference(),
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            block_size=settings.block_size,
            max_num_seqs=settings.max_num_seqs or 256,
            max_num_batched_tokens=settings.max_num_batched_tokens,
            enable_prefix_caching=True,
        )
        self._engine = vllm.AsyncLLMEngine.from_engine_args(args)
        self.tokenizer: Any = load_tokenizer(settings)
        self.model_name: str = settings.model_reference().rstrip("/").rsplit("/", 1)[-1]
        model_config = getattr(self._engine, "model_config", None)
        self.max_model_len: int = int(
            getattr(model_config, "max_model_len", None) or settings.max_model_len or 2048
        )

    def compile_structured(self, spec: StructuredOutput) -> None:
        # vLLM compiles grammars itself and rejects bad schemas when the request is added.
        _structured_kwargs(self._vllm, spec)

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: GenerationParams
    ) -> AsyncIterator[RequestOutput]:
        wanted = params.sampling
        sampling = self._vllm.SamplingParams(
            max_tokens=wanted.max_tokens,
            temperature=wanted.temperature,
            top_p=wanted.top_p,
            top_k=wanted.top_k if wanted.top_k > 0 else -1,
            seed=wanted.seed,
            stop=wanted.stop or None,
            stop_token_ids=wanted.stop_token_ids or None,
            ignore_eos=wanted.ignore_eos,
            logprobs=wanted.logprobs,
            **_structured_kwargs(self._vllm, params.structured),
        )
        prompt = {"prompt_token_ids": prompt_token_ids}
        tracker = CumulativeToDelta(request_id, len(prompt_token_ids))
        async for result in self._engine.generate(prompt, sampling, request_id):
            completion = result.outputs[0]
            start = tracker.sent_tokens
            token_ids = list(completion.token_ids)
            yield tracker.delta(
                completion.text,
                token_ids,
                logprobs=_logprobs(
                    completion.logprobs, start, token_ids, self.tokenizer, wanted.logprobs or 0
                ),
                finish_reason=completion.finish_reason if result.finished else None,
                cached_prompt_tokens=int(getattr(result, "num_cached_tokens", 0) or 0),
            )

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    def stats(self) -> None:
        return None  # the engine exports its own metrics

    def shutdown(self) -> None:
        shutdown = getattr(self._engine, "shutdown", None)
        if callable(shutdown):
            shutdown()
