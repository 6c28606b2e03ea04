"""Adapter: the ``Engine`` port over Plinth's built-in torch engine (``gpu_nodes.engine``)."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.engine import AsyncLLMEngine
from gpu_nodes.engine.exceptions import EngineDeadError, InvalidRequestError
from gpu_nodes.engine.outputs import RequestOutput
from gpu_nodes.openai.engine_port import (
    EngineSettings,
    EngineStats,
    GenerationParams,
    StructuredOutput,
)
from gpu_nodes.openai.exceptions import EngineNotReady, InvalidRequest
from gpu_nodes.openai.guided import GrammarFactory


def engine_config(settings: EngineSettings) -> EngineConfig:
    config = EngineConfig(model_path=str(settings.model_path))
    config.device = settings.device
    config.dtype = settings.dtype
    config.max_model_len = settings.max_model_len
    config.num_blocks = settings.num_blocks
    if settings.block_size is not None:
        config.block_size = settings.block_size
    if settings.max_num_seqs is not None:
        config.max_num_seqs = settings.max_num_seqs
    if settings.max_num_batched_tokens is not None:
        config.max_num_batched_tokens = settings.max_num_batched_tokens
    return config


class BuiltinEngine:
    def __init__(self, settings: EngineSettings) -> None:
        self._engine = AsyncLLMEngine(engine_config(settings))
        core = self._engine.engine
        self.tokenizer: Any = core.tokenizer
        self.model_name: str = core.model_name
        self.max_model_len: int = core.max_model_len
        # Ids of the last aborted requests (clients that went away), for inspection.
        self.recent_aborts: deque[str] = deque(maxlen=256)
        # The guide bitmask spans the logits (the model's vocabulary, which may be padded past
        # the tokenizer's), and the grammar may end on any token the engine stops on.
        self._grammars = GrammarFactory(
            self.tokenizer,
            vocab_size=core.vocab_size,
            stop_token_ids=sorted(core.eos_token_ids) or None,
        )

    @property
    def core(self) -> Any:
        """The synchronous ``LLMEngine`` (for inspection: metrics, tests)."""
        return self._engine.engine

    def compile_structured(self, spec: StructuredOutput) -> None:
        self._grammars.compile(spec)

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: GenerationParams
    ) -> AsyncIterator[RequestOutput]:
        # A fresh guide per request (it holds the grammar's matcher state), and lists of its
        # own: the n choices of one prompt were made from the same params.
        sampling = replace(
            params.sampling,
            stop=list(params.sampling.stop),
            stop_token_ids=list(params.sampling.stop_token_ids),
            guide=self._grammars.guide(params.structured) if params.structured else None,
        )
        outputs = self._engine.generate(request_id, prompt_token_ids, sampling)
        try:
            async for output in outputs:
                yield output
        except InvalidRequestError as exc:
            raise InvalidRequest(f"The engine rejected the request: {exc}") from None
        except EngineDeadError as exc:
            raise EngineNotReady(f"The engine stopped: {exc}") from None
        finally:
            # Closing this generator closes the engine's, which aborts the request.
            aclose = getattr(outputs, "aclose", None)
            if aclose is not None:
                await aclose()

    async def abort(self, request_id: str) -> None:
        self.recent_aborts.append(request_id)
        await self._engine.abort(request_id)

    def stats(self) -> EngineStats:
        # Read from the engine's thread without its lock: each figure is one len() or int,
        # atomic under the GIL; together they may be a step apart, which a scrape tolerates.
        core = self._engine.engine
        blocks = core.block_manager
        return EngineStats(
            waiting_sequences=len(core.scheduler.waiting),
            running_sequences=len(core.scheduler.running),
            kv_cache_blocks_used=blocks.num_blocks - blocks.num_free_blocks,
            kv_cache_blocks_total=blocks.num_blocks,
            generated_tokens=core.num_generated_tokens,
            preemptions=core.num_preemptions,
        )

    def shutdown(self) -> None:
        self._engine.shutdown()
