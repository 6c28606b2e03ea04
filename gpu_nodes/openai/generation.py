"""Running the n choices of one OpenAI request on the engine and collecting their outputs."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from gpu_nodes.engine.outputs import RequestOutput, TokenLogprob
from gpu_nodes.openai.engine_port import Engine, GenerationParams
from gpu_nodes.openai.protocol import PromptTokensDetails, Usage


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


@dataclass
class ChoiceJob:
    """One engine request: choice ``index`` of the response."""

    index: int
    request_id: str
    prompt_ids: list[int]
    params: GenerationParams
    prompt_group: int = 0  # completions: which prompt of a batch this choice answers


@dataclass
class ChoiceResult:
    """Everything one choice produced, accumulated from the engine's deltas."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0

    def add(self, output: RequestOutput) -> None:
        self.text += output.text_delta
        self.token_ids.extend(output.token_ids_delta)
        if output.logprobs_delta:
            self.logprobs.extend(output.logprobs_delta)
        self.prompt_tokens = output.prompt_tokens
        self.cached_prompt_tokens = output.cached_prompt_tokens
        if output.finished:
            self.finish_reason = output.finish_reason


class _Finished:
    """Marker put on the queue when a choice's engine stream ended."""


async def _pump(engine: Engine, job: ChoiceJob, queue: asyncio.Queue[Any]) -> None:
    finished = False
    try:
        stream = engine.generate(job.request_id, job.prompt_ids, job.params)
        async with aclosing(stream):  # type: ignore[type-var]
            async for output in stream:
                finished = finished or output.finished
                queue.put_nowait((job.index, output))
        queue.put_nowait((job.index, _Finished()))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait((job.index, exc))
    finally:
        if not finished:  # cancelled (client gone) or failed: free the engine's slot now
            await engine.abort(job.request_id)


async def run_choices(
    engine: Engine, jobs: list[ChoiceJob]
) -> AsyncGenerator[tuple[int, RequestOutput], None]:
    """Outputs of all ``jobs`` as they arrive, tagged with the choice index.

    Closing or cancelling the iterator cancels the per-choice tasks, which abort their engine
    requests; cleanup here is synchronous because an anyio-cancelled caller cannot await."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    tasks = [asyncio.create_task(_pump(engine, job, queue)) for job in jobs]
    remaining = len(tasks)
    try:
        while remaining:
            index, item = await queue.get()
            if isinstance(item, _Finished):
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()


async def collect_choices(engine: Engine, jobs: list[ChoiceJob]) -> list[ChoiceResult]:
    results = [ChoiceResult() for _ in jobs]
    async with aclosing(run_choices(engine, jobs)) as outputs:
        async for index, output in outputs:
            results[index].add(output)
    return results


def usage_of(results: list[ChoiceResult], jobs: list[ChoiceJob]) -> Usage:
    """Prompt tokens count once per prompt (the n choices of a prompt share it)."""
    prompt_tokens = 0
    cached = 0
    seen_groups: set[int] = set()
    for job, result in zip(jobs, results, strict=True):
        if job.prompt_group not in seen_groups:
            seen_groups.add(job.prompt_group)
            prompt_tokens += result.prompt_tokens or len(job.prompt_ids)
            cached += result.cached_prompt_tokens
    completion_tokens = sum(len(result.token_ids) for result in results)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
