"""``/v1/completions``: a prompt (text or token ids, or a batch of either) -> text choices."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from gpu_nodes.engine.outputs import TokenLogprob
from gpu_nodes.openai.engine_port import Engine
from gpu_nodes.openai.exceptions import NotSupported
from gpu_nodes.openai.generation import (
    ChoiceJob,
    ChoiceResult,
    collect_choices,
    new_id,
    now,
    run_choices,
    usage_of,
)
from gpu_nodes.openai.prompting import completion_prompt_ids
from gpu_nodes.openai.protocol import (
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
)
from gpu_nodes.openai.sampling import base_params, choice_jobs, resolve_max_tokens


@dataclass
class PreparedCompletion:
    request: CompletionRequest
    jobs: list[ChoiceJob]


def prepare_completion(engine: Engine, request: CompletionRequest) -> PreparedCompletion:
    if request.echo:
        raise NotSupported("'echo' is not supported by this server.", param="echo")
    if request.suffix:
        raise NotSupported("'suffix' is not supported by this model.", param="suffix")
    n = request.n or 1
    jobs: list[ChoiceJob] = []
    for group, prompt in enumerate(request.prompts()):
        prompt_ids = completion_prompt_ids(engine.tokenizer, prompt, len(engine.tokenizer))
        max_tokens = resolve_max_tokens(
            request.max_tokens, len(prompt_ids), engine.max_model_len, prompt_param="prompt"
        )
        params = base_params(
            request, max_tokens=max_tokens, logprobs=request.logprobs, structured=None
        )
        jobs += choice_jobs(prompt_ids, params, n, first_index=len(jobs), group=group)
    return PreparedCompletion(request=request, jobs=jobs)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -9999.0


def completion_logprobs(entries: list[TokenLogprob], text_start: int = 0) -> CompletionLogprobs:
    offsets = []
    position = text_start
    for entry in entries:
        offsets.append(position)
        position += len(entry.token)
    return CompletionLogprobs(
        tokens=[entry.token for entry in entries],
        token_logprobs=[_finite(entry.logprob) for entry in entries],
        top_logprobs=[{text: _finite(value) for _, text, value in entry.top} for entry in entries],
        text_offset=offsets,
    )


def _choice(prepared: PreparedCompletion, index: int, result: ChoiceResult) -> CompletionChoice:
    want = prepared.request.logprobs is not None
    return CompletionChoice(
        index=index,
        text=result.text,
        logprobs=completion_logprobs(result.logprobs) if want else None,
        finish_reason=result.finish_reason or "stop",
    )


async def completion(
    engine: Engine, prepared: PreparedCompletion, model_name: str
) -> CompletionResponse:
    results = await collect_choices(engine, prepared.jobs)
    return CompletionResponse(
        id=new_id("cmpl"),
        created=now(),
        model=model_name,
        choices=[_choice(prepared, index, result) for index, result in enumerate(results)],
        usage=usage_of(results, prepared.jobs),
    )


async def stream_completion(
    engine: Engine, prepared: PreparedCompletion, model_name: str
) -> AsyncIterator[str]:
    options = prepared.request.stream_options
    include_usage = bool(options and options.include_usage)
    base: dict[str, Any] = {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": now(),
        "model": model_name,
    }

    def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        body = {**base, "choices": choices, **({"usage": usage} if include_usage else {})}
        return f"data: {json.dumps(body)}\n\n"

    results = [ChoiceResult() for _ in prepared.jobs]
    want_logprobs = prepared.request.logprobs is not None
    async with aclosing(run_choices(engine, prepared.jobs)) as outputs:
        async for index, output in outputs:
            text_start = len(results[index].text)
            results[index].add(output)
            if not (output.text_delta or output.finished):
                continue
            logprobs = None
            if want_logprobs and output.logprobs_delta:
                logprobs = completion_logprobs(output.logprobs_delta, text_start).model_dump()
            reason = (output.finish_reason or "stop") if output.finished else None
            choice = {
                "index": index,
                "text": output.text_delta,
                "logprobs": logprobs,
                "finish_reason": reason,
            }
            yield event([choice])
    if include_usage:
        yield event([], usage_of(results, prepared.jobs).model_dump())
    yield "data: [DONE]\n\n"
