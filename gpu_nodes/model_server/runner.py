"""One loaded Model instance: background load, state, and the pre -> predict -> post pipeline."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import logging
import os
import threading
import time
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from pydantic import BaseModel, ValidationError

from gpu_nodes.model_server.exceptions import (
    InputError,
    PackageError,
    PredictTimeoutError,
    ReplicaBusyError,
    WeightsFetchError,
)
from gpu_nodes.model_server.loader import import_model_class, instantiate_model, package_roots
from gpu_nodes.model_server.package_config import ServingConfig
from gpu_nodes.model_server.secrets import SecretsMapping
from gpu_nodes.model_server.tracebacks import describe_exception, format_user_traceback
from plinth.contracts.replica_env import ReplicaVar

log = logging.getLogger("plinth.model_server")

_WEIGHTS_PROGRESS_KEYS = ("bytes_done", "bytes_total", "files_done", "files_total")

_END = object()  # sentinel for sync generator exhaustion

# Truss's OpenAI-style Model methods, each served at its own route (see openai_methods.py).
OPENAI_METHODS = ("chat_completions", "completions", "embeddings", "messages", "responses")


class ModelStatus(enum.StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass
class LoadState:
    status: ModelStatus = ModelStatus.LOADING
    error: str | None = None
    load_seconds: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    # While weights are fetched: bytes_done, bytes_total, files_done, files_total.
    weights: dict[str, int] | None = None


def _is_stream(value: Any) -> bool:
    return inspect.isgenerator(value) or inspect.isasyncgen(value)


def _wants_request(method: Callable[..., Any]) -> bool:
    try:
        return "request" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _input_model(method: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model annotating the method's input parameter, if any (Truss typed I/O)."""
    try:
        params = list(inspect.signature(method).parameters.values())
        hints = typing.get_type_hints(method)
    except Exception:  # unresolvable annotations: treat the input as untyped
        return None
    hint = hints.get(params[0].name) if params else None
    return hint if inspect.isclass(hint) and issubclass(hint, BaseModel) else None


class TrussModelHost:
    """Hosts the user's Truss ``Model`` object: loads it on a background thread, keeps its load
    state (thread-safe), and runs preprocess -> predict -> postprocess on the asyncio side.
    (Not the engine's ``ModelRunner``, which runs an LLM's forward passes.)"""

    def __init__(
        self,
        model_dir: Path,
        cfg: ServingConfig,
        *,
        secrets_dir: Path | None,
        environment: dict[str, Any] | None,
    ) -> None:
        self.model_dir = model_dir
        self.cfg = cfg
        self.state = LoadState()
        # Wall-clock (epoch) times of this start's phases, for the readiness body's cold_start:
        # environment_ready_at (the server is up), weights_ready_at, model_loaded_at.
        self.cold_start: dict[str, float] = {}
        self.user_roots = package_roots(model_dir, cfg)
        self._secrets = SecretsMapping(cfg.secrets, secrets_dir)
        self._environment = environment
        self._model: Any = None
        self._input_models: dict[str, type[BaseModel] | None] = {}
        self._semaphore = asyncio.Semaphore(cfg.predict_concurrency)
        self._thread: threading.Thread | None = None

    # ---- loading -------------------------------------------------------------------------
    def start_loading(self) -> None:
        if self._thread is not None:
            return
        self.state = LoadState()
        self.cold_start = {"environment_ready_at": time.time()}
        self._thread = threading.Thread(target=self._load, name="model-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        started = time.monotonic()
        try:
            self._fetch_weights()
            self.cold_start["weights_ready_at"] = time.time()
            model_class = import_model_class(self.model_dir, self.cfg)
            model = instantiate_model(
                model_class,
                {
                    "config": self.cfg.raw,
                    "data_dir": self.model_dir / self.cfg.data_dir,
                    "secrets": self._secrets,
                    "environment": self._environment,
                },
            )
            load = getattr(model, "load", None)
            if callable(load):
                outcome = load()
                if inspect.isawaitable(outcome):
                    asyncio.run(_await(outcome))
        except BaseException as exc:
            self._fail_load(exc)
            return
        self._input_models = {
            name: _input_model(getattr(model, name))
            for name in ("preprocess", "predict", *OPENAI_METHODS)
            if callable(getattr(model, name, None))
        }
        self._model = model
        elapsed = time.monotonic() - started
        self.cold_start["model_loaded_at"] = time.time()
        self.state = LoadState(ModelStatus.READY, load_seconds=elapsed)
        log.info("model %s loaded in %.2fs", self.cfg.model_name, elapsed)

    def _fetch_weights(self) -> None:
        """Materialise the deployment's mirrored weights (``PLINTH_WEIGHTS_*``) before load().

        A relative ``PLINTH_WEIGHTS_MOUNT_ROOT`` (local driver: the replica's directory) is made
        absolute and exported, so model code finds a file at ``mount_root + mount_location``.
        """
        if not os.environ.get(ReplicaVar.WEIGHTS_MANIFESTS):
            return
        # Imported only here: replicas without weights never load the agent.
        from gpu_nodes.weights.exceptions import WeightsError
        from gpu_nodes.weights.hooks import WeightsSettings, ensure_deployment_weights
        from gpu_nodes.weights.progress import Progress

        per_manifest: dict[str, Progress] = {}
        lock = threading.Lock()  # the agent reports from its fetch threads

        def report(progress: Progress) -> None:
            with lock:
                per_manifest[progress.manifest_id] = progress
                self.state.weights = {
                    key: sum(getattr(p, key) for p in per_manifest.values())
                    for key in _WEIGHTS_PROGRESS_KEYS
                }

        try:
            settings = WeightsSettings.from_env()
            mount_root = settings.mount_root.resolve()
            os.environ[ReplicaVar.WEIGHTS_MOUNT_ROOT] = str(mount_root)
            settings = dataclasses.replace(settings, mount_root=mount_root)
            self.state.weights = dict.fromkeys(_WEIGHTS_PROGRESS_KEYS, 0)
            results = ensure_deployment_weights(settings, progress=report)
        except (WeightsError, OSError) as exc:
            raise WeightsFetchError(f"fetching weights failed: {exc}") from exc
        finally:
            self.state.weights = None
        fetched = sum(r.bytes_fetched for r in results)
        log.info("weights ready under %s (%d bytes fetched)", mount_root, fetched)

    def _fail_load(self, exc: BaseException) -> None:
        if isinstance(exc, PackageError):
            message = str(exc)
            log.error("model %s failed to load: %s", self.cfg.model_name, message)
        else:
            message = describe_exception(exc)
            trace = format_user_traceback(exc, self.user_roots)
            log.error("model %s failed to load:\n%s", self.cfg.model_name, trace)
        self.state = LoadState(ModelStatus.FAILED, error=message)

    @property
    def ready(self) -> bool:
        return self.state.status is ModelStatus.READY

    def has_method(self, name: str) -> bool:
        """Whether the loaded model defines ``name`` (False before it loaded)."""
        return self._model is not None and callable(getattr(self._model, name, None))

    # ---- inference -----------------------------------------------------------------------
    async def _call(
        self, name: str, payload: Any, request: Any, permit: _Permit | None = None
    ) -> Any:
        method = getattr(self._model, name)
        args = (payload, request) if _wants_request(method) else (payload,)
        if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
            result = method(*args)
        else:
            # A worker thread cannot be stopped: when the request is cancelled (timeout, client
            # gone) it answers at once, and the thread's permit is given back when it returns.
            task = asyncio.ensure_future(anyio.to_thread.run_sync(method, *args))
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(_retrieve_outcome)
                if permit is not None:
                    permit.release_when_done(task)
                raise
        if inspect.isawaitable(result):
            result = await result
        return result

    def _validate_input(self, first_step: str, payload: Any) -> Any:
        input_model = self._input_models.get(first_step)
        if input_model is None:
            return payload
        try:
            return input_model.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}"
                for error in exc.errors()
            )
            raise InputError(f"invalid input for {input_model.__name__}: {problems}") from exc

    def has_free_slot(self) -> bool:
        """A predict_concurrency slot is free and no call is waiting for one."""
        return not self._semaphore.locked()  # locked() also counts waiters (py >= 3.11)

    async def run(self, payload: Any, request: Any = None, *, async_work: bool = False) -> Any:
        """Run the pipeline. Returns the (post-processed) result, or a ``PredictionStream``.

        Raises PredictTimeoutError past ``runtime.predict_timeout`` (a stream: until its first
        chunk). Cancelling the caller (the client went away) cancels an async predict and gives
        its predict_concurrency permit back at once. ``async_work`` calls never wait for a
        slot: ReplicaBusyError when none is free of sync traffic (sync first).
        """
        return await self._within_timeout(
            "predict", lambda: self._pipeline(payload, request, async_work)
        )

    async def run_method(self, name: str, payload: Any, request: Any = None) -> Any:
        """One OpenAI-style method (``chat_completions``...), as Truss runs it: no preprocess
        or postprocess and no predict_concurrency slot (an LLM method batches on its own), but
        within ``runtime.predict_timeout``. A generator comes back as a ``PredictionStream``."""
        return await self._within_timeout(name, lambda: self._method(name, payload, request))

    async def _within_timeout(self, what: str, work: Callable[[], Awaitable[Any]]) -> Any:
        timeout = self.cfg.predict_timeout
        scope: anyio.CancelScope | None = None
        try:
            with anyio.fail_after(timeout) as scope:
                return await work()
        except TimeoutError:
            if scope is None or not scope.cancelled_caught:
                raise  # the model's own TimeoutError
            raise PredictTimeoutError(
                f"{what} did not finish within runtime.predict_timeout={timeout:g}s"
            ) from None

    async def _method(self, name: str, payload: Any, request: Any) -> Any:
        payload = self._validate_input(name, payload)
        result = await self._call(name, payload, request)
        if _is_stream(result):
            stream = PredictionStream(result, None, self.cfg.streaming_read_timeout)
            await stream.prefetch()
            return stream
        return result

    async def _pipeline(self, payload: Any, request: Any, async_work: bool) -> Any:
        if async_work and not self.has_free_slot():
            raise ReplicaBusyError("no predict_concurrency slot is free of sync traffic")
        has_preprocess = callable(getattr(self._model, "preprocess", None))
        payload = self._validate_input("preprocess" if has_preprocess else "predict", payload)
        if has_preprocess:
            payload = await self._call("preprocess", payload, request)
        if async_work and not self.has_free_slot():
            # Checked again after preprocess: sync calls may have taken the slot meanwhile.
            # No await between this check and acquire(), so the slot cannot be lost.
            raise ReplicaBusyError("no predict_concurrency slot is free of sync traffic")
        await self._semaphore.acquire()
        permit = _Permit(self._semaphore)
        try:
            result = await self._call("predict", payload, request, permit)
            if _is_stream(result):
                # Truss semantics: postprocess is not applied to streams. The permit stays held
                # while the stream is read; PredictionStream.close() gives it back.
                stream = PredictionStream(result, self._semaphore, self.cfg.streaming_read_timeout)
                await stream.prefetch()
                return stream
        except BaseException:
            permit.release()
            raise
        permit.release()
        if callable(getattr(self._model, "postprocess", None)):
            result = await self._call("postprocess", result, request)
        return result


class _Permit:
    """One predict_concurrency permit, given back exactly once."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._owned = True

    def release(self) -> None:
        if self._owned:
            self._owned = False
            self._semaphore.release()

    def release_when_done(self, task: asyncio.Future[Any]) -> None:
        """Hand the permit to an abandoned worker thread: free once it really stops."""
        self._owned = False

        task.add_done_callback(lambda _: self._semaphore.release())


def _retrieve_outcome(finished: asyncio.Future[Any]) -> None:
    """Mark an abandoned call's exception as seen: its request was already answered."""
    if not finished.cancelled():
        finished.exception()


async def _await(awaitable: Any) -> Any:
    return await awaitable


class PredictionStream:
    """A generator result being streamed; a predict stream holds one predict_concurrency permit
    until closed (``semaphore``; None for methods that take no permit)."""

    def __init__(
        self, source: Any, semaphore: asyncio.Semaphore | None, read_timeout: float
    ) -> None:
        self._source = source
        self._semaphore = semaphore
        self._read_timeout = read_timeout
        self._first: Any = _END
        self._closed = False

    async def _next(self) -> Any:
        with anyio.fail_after(self._read_timeout):
            if inspect.isasyncgen(self._source):
                try:
                    return await self._source.__anext__()
                except StopAsyncIteration:
                    return _END
            return await anyio.to_thread.run_sync(next, self._source, _END, abandon_on_cancel=True)

    async def prefetch(self) -> None:
        """Read the first chunk before the response starts, so early errors become a 500."""
        self._first = await self._next()

    async def chunks(self) -> AsyncIterator[Any]:
        chunk, self._first = self._first, _END
        while chunk is not _END:
            yield chunk
            chunk = await self._next()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._semaphore is not None:
            self._semaphore.release()
        try:
            if inspect.isasyncgen(self._source):
                await self._source.aclose()
            else:
                self._source.close()
        except (ValueError, RuntimeError):  # still running in an abandoned thread
            pass
