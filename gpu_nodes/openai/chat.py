"""``/v1/chat/completions``: prompt building, the JSON response, and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from gpu_nodes.engine.outputs import TokenLogprob
from gpu_nodes.openai.engine_port import Engine
from gpu_nodes.openai.exceptions import InvalidRequest
from gpu_nodes.openai.generation import (
    ChoiceJob,
    ChoiceResult,
    collect_choices,
    new_id,
    now,
    run_choices,
    usage_of,
)
from gpu_nodes.openai.prompting import chat_prompt_ids
from gpu_nodes.openai.protocol import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChoiceLogprobs,
    ResponseMessage,
    TokenLogprobEntry,
    ToolCall,
    ToolDefinition,
    TopLogprob,
)
from gpu_nodes.openai.sampling import (
    base_params,
    choice_jobs,
    resolve_max_tokens,
    structured_from_format,
)
from gpu_nodes.openai.tools import forced_tools, parse_tool_call, tool_call_constraint


@dataclass
class PreparedChat:
    request: ChatCompletionRequest
    jobs: list[ChoiceJob]
    forced_tools: list[ToolDefinition]  # output is constrained to a call of one of these
    auto_tools: list[ToolDefinition]  # the model may answer with a call of one of these
    want_logprobs: bool


async def prepare_chat(engine: Engine, request: ChatCompletionRequest) -> PreparedChat:
    if request.top_logprobs is not None and not request.logprobs:
        raise InvalidRequest("'top_logprobs' requires 'logprobs' to be true.", param="logprobs")
    tool_choice = request.tool_choice or ("auto" if request.tools else "none")
    template_tools = request.tools if tool_choice != "none" else None
    prompt_ids = chat_prompt_ids(engine.tokenizer, request.messages, template_tools)
    forced = forced_tools(request)
    structured = tool_call_constraint(forced) if forced else None
    structured = structured or structured_from_format(request.response_format)
    if structured is not None:  # compile now so a bad schema is a 400, not a broken stream
        await asyncio.to_thread(engine.compile_structured, structured)
    max_tokens = resolve_max_tokens(
        request.max_completion_tokens or request.max_tokens,
        len(prompt_ids),
        engine.max_model_len,
        prompt_param="messages",
    )
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    params = base_params(request, max_tokens=max_tokens, logprobs=logprobs, structured=structured)
    return PreparedChat(
        request=request,
        jobs=choice_jobs(prompt_ids, params, request.n or 1),
        forced_tools=forced,
        auto_tools=list(request.tools or []) if tool_choice == "auto" and not forced else [],
        want_logprobs=bool(request.logprobs),
    )


def _finite(logprob: float) -> float:
    # JSON has no -inf; a masked-out token's logprob is reported as a very small number.
    return logprob if math.isfinite(logprob) else -9999.0


def chat_logprobs(entries: list[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobEntry(
                token=entry.token,
                logprob=_finite(entry.logprob),
                bytes=list(entry.token.encode()),
                top_logprobs=[
                    TopLogprob(token=text, logprob=_finite(value), bytes=list(text.encode()))
                    for _, text, value in entry.top
                ],
            )
            for entry in entries
        ]
    )


def _tool_call_of(prepared: PreparedChat, result: ChoiceResult) -> ToolCall | None:
    if prepared.forced_tools and result.finish_reason == "stop":
        return parse_tool_call(result.text, prepared.forced_tools)
    if prepared.auto_tools:
        return parse_tool_call(result.text, prepared.auto_tools)
    return None


def _choice(prepared: PreparedChat, index: int, result: ChoiceResult) -> ChatChoice:
    call = _tool_call_of(prepared, result)
    message = ResponseMessage(
        content=None if call else result.text, tool_calls=[call] if call else None
    )
    return ChatChoice(
        index=index,
        message=message,
        logprobs=chat_logprobs(result.logprobs) if prepared.want_logprobs else None,
        finish_reason="tool_calls" if call else (result.finish_reason or "stop"),
    )


async def chat_completion(
    engine: Engine, prepared: PreparedChat, model_name: str
) -> ChatCompletionResponse:
    results = await collect_choices(engine, prepared.jobs)
    return ChatCompletionResponse(
        id=new_id("chatcmpl"),
        created=now(),
        model=model_name,
        choices=[_choice(prepared, index, result) for index, result in enumerate(results)],
        usage=usage_of(results, prepared.jobs),
    )


class _ChunkWriter:
    """Serialises ``chat.completion.chunk`` SSE events sharing one id."""

    def __init__(self, model_name: str, include_usage: bool) -> None:
        self.base: dict[str, Any] = {
            "id": new_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": now(),
            "model": model_name,
        }
        self.include_usage = include_usage

    def event(self, choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> str:
        body = {**self.base, "choices": choices}
        if self.include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    def choice(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: list[TokenLogprob] | None = None,
    ) -> str:
        entry = {
            "index": index,
            "delta": delta,
            "logprobs": chat_logprobs(logprobs).model_dump() if logprobs else None,
            "finish_reason": finish_reason,
        }
        return self.event([entry])


_PYTHON_TAG = "<|python_tag|>"


@dataclass
class _StreamedChoice:
    """What one choice has generated and how much of it the client has been sent.

    Text that may be a tool call (``tool_choice`` forcing one, or ``auto`` and the answer starts
    like JSON) is held back and sent at the end: as a tool call if it parses, else as text."""

    result: ChoiceResult
    sent_chars: int = 0
    sent_logprobs: int = 0
    holding: bool | None = None  # None: undecided (only whitespace or a tag prefix so far)

    def decide(self, prepared: PreparedChat) -> None:
        if self.holding is not None:
            return
        if prepared.forced_tools:
            self.holding = True
        elif not prepared.auto_tools:
            self.holding = False
        else:
            start = self.result.text.lstrip()
            if start and not _PYTHON_TAG.startswith(start):
                self.holding = start.startswith(("{", _PYTHON_TAG))

    def unsent(self, writer: _ChunkWriter, index: int, want_logprobs: bool) -> list[str]:
        text = self.result.text[self.sent_chars :]
        logprobs = self.result.logprobs[self.sent_logprobs :] if want_logprobs else []
        self.sent_chars = len(self.result.text)
        self.sent_logprobs = len(self.result.logprobs)
        if not (text or logprobs):
            return []
        return [writer.choice(index, {"content": text}, logprobs=logprobs or None)]


def _final_events(
    writer: _ChunkWriter, prepared: PreparedChat, index: int, choice: _StreamedChoice
) -> list[str]:
    reason = choice.result.finish_reason or "stop"
    call = _tool_call_of(prepared, choice.result) if choice.holding is not False else None
    if call is None:
        events = choice.unsent(writer, index, prepared.want_logprobs)
    else:
        events = [writer.choice(index, {"tool_calls": [{"index": 0, **call.model_dump()}]})]
        reason = "tool_calls"
    events.append(writer.choice(index, {}, finish_reason=reason))
    return events


async def stream_chat(
    engine: Engine, prepared: PreparedChat, model_name: str
) -> AsyncIterator[str]:
    options = prepared.request.stream_options
    writer = _ChunkWriter(model_name, include_usage=bool(options and options.include_usage))
    choices = [_StreamedChoice(ChoiceResult()) for _ in prepared.jobs]
    for job in prepared.jobs:
        yield writer.choice(job.index, {"role": "assistant", "content": ""})
    async with aclosing(run_choices(engine, prepared.jobs)) as outputs:
        async for index, output in outputs:
            choice = choices[index]
            choice.result.add(output)
            choice.decide(prepared)
            if output.finished:
                for event in _final_events(writer, prepared, index, choice):
                    yield event
            elif choice.holding is False:
                for event in choice.unsent(writer, index, prepared.want_logprobs):
                    yield event
    results = [choice.result for choice in choices]
    if writer.include_usage:
        yield writer.event([], usage_of(results, prepared.jobs).model_dump())
    yield "data: [DONE]\n\n"
