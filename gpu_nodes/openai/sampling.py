"""OpenAI sampling fields -> the engine's ``GenerationParams`` (one per choice)."""

from __future__ import annotations

from dataclasses import replace

from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.openai.engine_port import GenerationParams, StructuredOutput
from gpu_nodes.openai.exceptions import InvalidRequest
from gpu_nodes.openai.generation import ChoiceJob, new_id
from gpu_nodes.openai.protocol import ResponseFormat, _SamplingFields


def resolve_max_tokens(
    requested: int | None, prompt_len: int, max_model_len: int, *, prompt_param: str
) -> int:
    """Requested tokens, or all the context left; 400 when prompt + output cannot fit."""
    room = max_model_len - prompt_len
    if room < 1:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens, and the prompt "
            f"has {prompt_len} tokens. Please shorten the prompt.",
            param=prompt_param,
        )
    if requested is not None and requested > room:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the prompt, "
            f"{requested} for the completion). Please reduce the prompt or max_tokens.",
            param="max_tokens",
        )
    return requested if requested is not None else room


def structured_from_format(response_format: ResponseFormat | None) -> StructuredOutput | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return StructuredOutput(kind="json_object")
    assert response_format.json_schema is not None  # guaranteed by ResponseFormat's validator
    return StructuredOutput(
        kind="json_schema",
        schema=response_format.json_schema.schema_ or {"type": "object"},
        param="response_format.json_schema.schema",
    )


def base_params(
    request: _SamplingFields,
    *,
    max_tokens: int,
    logprobs: int | None,
    structured: StructuredOutput | None,
) -> GenerationParams:
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = 1.0 if request.top_p is None else request.top_p
    if top_p == 0:  # "only the most likely token" is greedy decoding
        temperature, top_p = 0.0, 1.0
    top_k = request.top_k if request.top_k and request.top_k > 0 else -1
    sampling = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        seed=request.seed,
        stop=request.stop_list(),
        ignore_eos=request.ignore_eos,
        logprobs=logprobs,
    )
    return GenerationParams(sampling, structured)


def choice_jobs(
    prompt_ids: list[int], params: GenerationParams, n: int, *, first_index: int = 0, group: int = 0
) -> list[ChoiceJob]:
    """n engine requests for one prompt; seeded requests use seed+i so choices differ."""
    jobs = []
    for offset in range(n):
        seed = None if params.sampling.seed is None else params.sampling.seed + offset
        jobs.append(
            ChoiceJob(
                index=first_index + offset,
                request_id=new_id("req"),
                prompt_ids=prompt_ids,
                params=replace(params, sampling=replace(params.sampling, seed=seed)),
                prompt_group=group,
            )
        )
    return jobs
