"""AsyncLLMEngine: streaming, concurrency, abort and cancellation through the asyncio front."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import AsyncLLMEngine
from gpu_nodes.engine.exceptions import InvalidRequestError
from gpu_nodes.engine.outputs import RequestOutput
from gpu_nodes.engine.sampling_params import SamplingParams


@pytest.fixture(scope="module")
def async_engine(tiny_model_dir: Path) -> Iterator[AsyncLLMEngine]:
    engine = AsyncLLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu"))
    yield engine
    engine.shutdown()


async def collect(engine: AsyncLLMEngine, rid: str, prompt: list[int], params: SamplingParams):
    return [out async for out in engine.generate(rid, prompt, params)]


def wait_idle(engine: AsyncLLMEngine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.engine.has_unfinished_requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not engine.engine.has_unfinished_requests()


def test_generate_streams_same_tokens_as_sync_engine(async_engine, tiny_engine, run_engine):
    prompt = list(tiny_engine.tokenizer("The garden shares").input_ids)
    params = SamplingParams(max_tokens=10, temperature=0, ignore_eos=True)
    outputs = asyncio.run(collect(async_engine, "a1", prompt, params))
    assert len(outputs) == 10
    assert [o.finished for o in outputs] == [False] * 9 + [True]
    expected = run_engine(tiny_engine, {"s": (prompt, params)})["s"]
    assert [o.token_ids_delta for o in outputs] == [o.token_ids_delta for o in expected]
    assert "".join(o.text_delta for o in outputs) == "".join(o.text_delta for o in expected)


def test_concurrent_generates(async_engine) -> None:
    params = SamplingParams(max_tokens=6, temperature=0, ignore_eos=True)

    async def main() -> list[list[RequestOutput]]:
        return await asyncio.gather(
            *(collect(async_engine, f"c{i}", [1, 5 + i, 9], params) for i in range(6))
        )

    results = asyncio.run(main())
    assert all(r[-1].finished and r[-1].completion_tokens == 6 for r in results)


def test_abort_ends_stream_with_abort_reason(async_engine) -> None:
    params = SamplingParams(max_tokens=2000, ignore_eos=True)

    async def main() -> list[RequestOutput]:
        seen: list[RequestOutput] = []
        async for out in async_engine.generate("ab", [1, 2, 3], params):
            seen.append(out)
            if len(seen) == 3:
                await async_engine.abort("ab")
        return seen

    outputs = asyncio.run(asyncio.wait_for(main(), timeout=30))
    assert outputs[-1].finished and outputs[-1].finish_reason == "abort"
    assert len(outputs) < 100
    wait_idle(async_engine)


def test_closing_the_iterator_aborts_the_request(async_engine) -> None:
    params = SamplingParams(max_tokens=2000, ignore_eos=True)

    async def main() -> None:
        stream = async_engine.generate("cx", [1, 2, 3], params)
        count = 0
        async for _ in stream:
            count += 1
            if count == 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(asyncio.wait_for(main(), timeout=30))
    wait_idle(async_engine)


def test_cancelling_the_task_aborts_the_request(async_engine) -> None:
    params = SamplingParams(max_tokens=2000, ignore_eos=True)

    async def main() -> None:
        task = asyncio.create_task(collect(async_engine, "cancel-me", [4, 5, 6], params))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    wait_idle(async_engine)


def test_invalid_request_raises_before_streaming(async_engine) -> None:
    async def main() -> None:
        await collect(async_engine, "bad", [1, 2], SamplingParams(top_k=0))

    with pytest.raises(InvalidRequestError, match="top_k"):
        asyncio.run(main())


def test_shutdown_ends_open_streams_and_refuses_new_ones(tiny_model_dir: Path) -> None:
    from gpu_nodes.engine.exceptions import EngineDeadError

    engine = AsyncLLMEngine(EngineConfig(model_path=str(tiny_model_dir), device="cpu"))
    params = SamplingParams(max_tokens=4000, ignore_eos=True)

    async def main() -> None:
        stream = engine.generate("long", [1, 2, 3], params)
        await stream.__anext__()
        engine.shutdown()
        with pytest.raises(EngineDeadError):
            async for _ in stream:
                pass
        with pytest.raises(EngineDeadError):
            await collect(engine, "late", [1, 2], params)

    asyncio.run(asyncio.wait_for(main(), timeout=60))
