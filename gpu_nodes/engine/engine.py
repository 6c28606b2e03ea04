"""LLMEngine (synchronous core: schedule -> one forward -> sample -> detokenize) and
AsyncLLMEngine (the core on a background thread with an asyncio front)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from gpu_nodes.engine.block_manager import BlockManager
from gpu_nodes.engine.config import EngineConfig
from gpu_nodes.engine.detokenizer import IncrementalDetokenizer
from gpu_nodes.engine.exceptions import EngineDeadError, InvalidRequestError
from gpu_nodes.engine.model_runner import ModelRunner
from gpu_nodes.engine.outputs import RequestOutput, TokenLogprob
from gpu_nodes.engine.sampler import SampleResult, sample
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.engine.scheduler import Scheduler
from gpu_nodes.engine.sequence import Sequence, SequenceStatus

logger = logging.getLogger(__name__)

MAX_LOGPROBS = 20
IDLE_WAIT_S = 0.05


def _eos_ids(tokenizer: Any, model_path: Path) -> set[int]:
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    generation_config = model_path / "generation_config.json"
    if generation_config.is_file():
        import json

        eos = json.loads(generation_config.read_text()).get("eos_token_id")
        ids.update([eos] if isinstance(eos, int) else list(eos or []))
    return ids


class LLMEngine:
    """Synchronous engine core; one thread owns it."""

    def __init__(self, config: EngineConfig) -> None:
        from transformers import AutoTokenizer

        self.config = config
        path = Path(config.model_path)
        self.runner = ModelRunner(
            config.model_path,
            config.device,
            config.dtype,
            config.block_size,
            config.num_blocks,
            config.max_model_len,
            config.max_num_seqs,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(config.model_path)
        # A private copy for detokenizing on the engine thread: callers tokenize with
        # `tokenizer` on other threads, and Rust tokenizers refuse concurrent mutable use.
        self._detok_tokenizer = AutoTokenizer.from_pretrained(config.model_path)
        self.model_name = path.name
        self.max_model_len = self.runner.max_model_len
        self.vocab_size = self.runner.spec.vocab_size  # logits width (bitmask covers this)
        self.eos_token_ids = _eos_ids(self.tokenizer, path)
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(
            self.block_manager, config.max_num_seqs, config.max_num_batched_tokens
        )
        self._seqs: dict[str, Sequence] = {}
        self._pending: list[RequestOutput] = []
        self._arrivals = itertools.count()
        self._token_text: dict[int, str] = {}
        self.num_preemptions = 0  # total since start (observability and tests)
        self.num_generated_tokens = 0  # total since start (the replica's /metrics)
        self.last_step_num_scheduled = 0

    # ---- requests --------------------------------------------------------------------------
    def validate_request(self, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """Raise InvalidRequestError naming the bad field; safe to call from any thread."""
        if not prompt_token_ids:
            raise InvalidRequestError("prompt_token_ids: the prompt is empty")
        bad = [t for t in prompt_token_ids if not 0 <= t < self.vocab_size]
        if bad:
            raise InvalidRequestError(
                f"prompt_token_ids: token id {bad[0]} is outside the vocabulary "
                f"(0..{self.vocab_size - 1})"
            )
        if len(prompt_token_ids) >= self.max_model_len:
            raise InvalidRequestError(
                f"prompt_token_ids: prompt has {len(prompt_token_ids)} tokens; the model's "
                f"maximum context is {self.max_model_len} including at least 1 output token"
            )
        checks: list[tuple[bool, str]] = [
            (params.max_tokens >= 1, f"max_tokens must be >= 1, got {params.max_tokens}"),
            (params.temperature >= 0, f"temperature must be >= 0, got {params.temperature}"),
            (0 < params.top_p <= 1, f"top_p must be in (0, 1], got {params.top_p}"),
            (params.top_k == -1 or params.top_k >= 1, f"top_k must be -1 or >= 1: {params.top_k}"),
            (
                params.logprobs is None or 0 <= params.logprobs <= MAX_LOGPROBS,
                f"logprobs must be between 0 and {MAX_LOGPROBS}, got {params.logprobs}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidRequestError(message)

    def add_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> None:
        if request_id in self._seqs:
            raise InvalidRequestError(f"request_id {request_id!r} is already running")
        self.validate_request(prompt_token_ids, params)
        seq = Sequence(
            request_id=request_id,
            token_ids=list(prompt_token_ids),
            params=params,
            detokenizer=IncrementalDetokenizer(self._detok_tokenizer, params.stop),
            arrival=next(self._arrivals),
        )
        self._seqs[request_id] = seq
        self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> None:
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return
        self.scheduler.remove(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = "abort"
        self._pending.append(self._output(seq, "", [], None))

    def has_unfinished_requests(self) -> bool:
        return bool(self._pending) or self.scheduler.has_unfinished()

    # ---- step ------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        outputs, self._pending = self._pending, []
        plan = self.scheduler.schedule()
        self.num_preemptions += len(plan.preempted)
        self.last_step_num_scheduled = len(plan.scheduled)
        if not plan.scheduled:
            return outputs
        logits, _rows = self.runner.execute(plan.scheduled)
        sampling: list[Sequence] = []
        for item in plan.scheduled:
            completes = item.completes
            item.seq.num_computed_tokens += item.num_new_tokens
            self.block_manager.cache_computed_blocks(item.seq)
            if completes:
                sampling.append(item.seq)
        if sampling:
            for seq, result in zip(sampling, sample(logits, sampling), strict=True):
                outputs.append(self._append_token(seq, result))
        return outputs

    def _finish_reason(self, seq: Sequence, token: int, text_stopped: bool, ok: bool) -> str | None:
        params = seq.params
        if token in params.stop_token_ids or (
            not params.ignore_eos and token in self.eos_token_ids
        ):
            return "stop"
        if text_stopped or not ok:
            return "stop"
        if params.guide is not None and params.guide.is_terminated():
            return "stop"
        if seq.num_completion_tokens >= params.max_tokens or seq.num_tokens >= self.max_model_len:
            return "length"
        return None

    def _fail_guided(self, seq: Sequence, error: str) -> RequestOutput:
        logger.warning("request %s: token guide failed (%s); aborting it", seq.request_id, error)
        self.scheduler.remove(seq)
        self._seqs.pop(seq.request_id, None)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = "abort"
        return self._output(seq, seq.detokenizer.take_delta(final=True), [], None)

    def _append_token(self, seq: Sequence, result: SampleResult) -> RequestOutput:
        if result.guide_error is not None:
            return self._fail_guided(seq, result.guide_error)
        token = result.token_id
        params = seq.params
        try:
            accepted = params.guide.accept(token) if params.guide is not None else True
        except Exception as exc:
            return self._fail_guided(seq, f"{type(exc).__name__}: {exc}")
        seq.token_ids.append(token)
        self.num_generated_tokens += 1
        is_stop_token = token in params.stop_token_ids or (
            not params.ignore_eos and token in self.eos_token_ids
        )
        text_stopped = False if is_stop_token else seq.detokenizer.push(token)
        reason = self._finish_reason(seq, token, text_stopped, accepted)
        if reason is not None:
            seq.detokenizer.flush()
            seq.status = SequenceStatus.FINISHED
            seq.finish_reason = reason
            self.scheduler.remove(seq)
            self._seqs.pop(seq.request_id, None)
        text = seq.detokenizer.take_delta(final=reason is not None)
        logprobs = None
        if params.logprobs is not None and result.logprob is not None:
            top = [(t, self._text_of(t), lp) for t, lp in result.top]
            logprobs = [TokenLogprob(token, self._text_of(token), result.logprob, top)]
        return self._output(seq, text, [token], logprobs)

    def _text_of(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = str(self._detok_tokenizer.decode([token_id]))
            self._token_text[token_id] = text
        return text

    def _output(
        self,
        seq: Sequence,
        text: str,
        token_ids: list[int],
        logprobs: list[TokenLogprob] | None,
    ) -> RequestOutput:
        return RequestOutput(
            request_id=seq.request_id,
            text_delta=text,
            token_ids_delta=token_ids,
            logprobs_delta=logprobs,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            prompt_tokens=seq.num_prompt_tokens,
            completion_tokens=seq.num_completion_tokens,
            cached_prompt_tokens=seq.prompt_cache_hit_tokens,
        )


class _Stream:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[RequestOutput | BaseException] = asyncio.Queue()

    def put(self, item: RequestOutput | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class AsyncLLMEngine:
    """Runs LLMEngine.step() on a background thread; asyncio callers stream outputs."""

    def __init__(self, config: EngineConfig) -> None:
        self.engine = LLMEngine(config)
        self._lock = threading.Lock()
        self._commands: list[Callable[[], None]] = []
        self._streams: dict[str, _Stream] = {}
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="plinth-engine", daemon=True)
        self._thread.start()

    def _submit(self, command: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(command)
        self._wakeup.set()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                with self._lock:
                    commands, self._commands = self._commands, []
                for command in commands:
                    command()
                if self.engine.has_unfinished_requests():
                    outputs = self.engine.step()
                    for output in outputs:
                        self._deliver(output)
                    if not outputs and self.engine.last_step_num_scheduled == 0:
                        self._wakeup.wait(IDLE_WAIT_S)  # nothing runnable: do not spin
                        self._wakeup.clear()
                else:
                    self._wakeup.wait(IDLE_WAIT_S)
                    self._wakeup.clear()
        except Exception as exc:  # the loop must not die silently: fail every waiter
            logger.exception("engine loop failed")
            self._error = exc
            self._fail_streams(f"engine loop failed: {exc}")

    def _fail_streams(self, message: str) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream.put(EngineDeadError(message))

    def _deliver(self, output: RequestOutput) -> None:
        with self._lock:
            stream = self._streams.get(output.request_id)
            if stream is not None and output.finished:
                del self._streams[output.request_id]
        if stream is not None:
            stream.put(output)

    def _add(self, request_id: str, prompt: list[int], params: SamplingParams) -> None:
        try:
            self.engine.add_request(request_id, prompt, params)
        except Exception as exc:  # a bad request must not stop the loop
            with self._lock:
                stream = self._streams.pop(request_id, None)
            if stream is not None:
                stream.put(exc)

    async def generate(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams
    ) -> AsyncIterator[RequestOutput]:
        """Yield outputs as steps produce them; the last has finished=True. Closing or
        cancelling the iterator early aborts the request."""
        if self._error is not None or self._stopping.is_set():
            raise EngineDeadError("the engine is not running")
        self.engine.validate_request(prompt_token_ids, params)
        stream = _Stream(asyncio.get_running_loop())
        with self._lock:
            if request_id in self._streams:
                raise InvalidRequestError(f"request_id {request_id!r} is already running")
            self._streams[request_id] = stream
        prompt = list(prompt_token_ids)
        self._submit(lambda: self._add(request_id, prompt, params))
        finished = False
        try:
            while True:
                item = await stream.queue.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                with self._lock:
                    self._streams.pop(request_id, None)
                self._submit(lambda: self.engine.abort_request(request_id))

    async def abort(self, request_id: str) -> None:
        self._submit(lambda: self.engine.abort_request(request_id))

    def shutdown(self) -> None:
        """Stop the loop; requests still streaming end with EngineDeadError."""
        self._stopping.set()
        self._wakeup.set()
        self._thread.join(timeout=30)
        self._fail_streams("the engine was shut down")
