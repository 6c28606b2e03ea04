"""The ``Engine`` port the OpenAI layer talks to.

Adapters: built-in torch engine (``builtin_engine``), vLLM (``vllm_engine``) and TensorRT-LLM
(``trtllm_engine``); ``engine_factory.load_engine`` picks one. The port reuses the built-in
engine's plain data types (the engine is a leaf: it knows nothing of this layer): outputs are its
``RequestOutput`` / ``TokenLogprob``, and ``GenerationParams`` is its ``SamplingParams`` plus the
structured-output constraint described as data, since each engine compiles that its own way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from gpu_nodes.engine.outputs import RequestOutput
from gpu_nodes.engine.sampling_params import SamplingParams
from gpu_nodes.openai.exceptions import EngineLoadError


@dataclass(frozen=True)
class StructuredOutput:
    """A constraint on the output text: any JSON object, or JSON matching ``schema``.

    ``param`` is the request field it came from, so a schema that fails to compile is reported
    against the right field (``response_format`` or ``tools``)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    param: str = "response_format"

    def cache_key(self) -> str:
        return f"{self.kind}:{json.dumps(self.schema, sort_keys=True, separators=(',', ':'))}"


@dataclass(frozen=True)
class GenerationParams:
    """One engine request's inputs. ``sampling.guide`` stays None on this side: the built-in
    adapter compiles ``structured`` into it, the other engines into their own guided decoding."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    structured: StructuredOutput | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine's load, read when ``/metrics`` is scraped."""

    waiting_sequences: int  # admitted to the engine, not scheduled yet
    running_sequences: int
    kv_cache_blocks_used: int
    kv_cache_blocks_total: int
    generated_tokens: int  # since the engine started
    preemptions: int  # since the engine started


class Engine(Protocol):
    """What the OpenAI server needs from an inference engine."""

    model_name: str
    max_model_len: int
    tokenizer: Any  # transformers.PreTrainedTokenizerBase

    def compile_structured(self, spec: StructuredOutput) -> None:
        """Check (and cache) a constraint before generation; ``InvalidRequest`` if it is bad."""
        ...

    def generate(
        self, request_id: str, prompt_token_ids: list[int], params: GenerationParams
    ) -> AsyncIterator[RequestOutput]:
        """Outputs as they are produced; the last has ``finished=True``. Closing aborts."""
        ...

    async def abort(self, request_id: str) -> None: ...

    def stats(self) -> EngineStats | None:
        """Load figures for ``/metrics``; None for engines that export their own."""
        ...

    def shutdown(self) -> None: ...


@dataclass(frozen=True)
class EngineSettings:
    """The package's ``engine:`` section resolved against the package directory."""

    kind: str
    model_path: Path
    max_model_len: int | None = None
    block_size: int | None = None
    num_blocks: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    model_source: str = ""  # engine.model_path as written (vLLM / TRT-LLM: maybe a hub repo id)

    def model_reference(self) -> str:
        """A local directory when there is one, else the name as written (a hub repo id)."""
        if self.model_path.exists() or not self.model_source:
            return str(self.model_path)
        return self.model_source

    @classmethod
    def from_spec(cls, model_dir: Path, spec: Any) -> EngineSettings:
        """From ``TrussConfig.engine`` (``EngineSpec``); ``model_path`` may be relative."""
        raw_path = getattr(spec, "model_path", None)
        if not raw_path:
            raise EngineLoadError("config.yaml: field 'engine.model_path' is required")
        model_path = Path(str(raw_path)).expanduser()
        if not model_path.is_absolute():
            model_path = (model_dir / model_path).resolve()
        return cls(
            kind=str(getattr(spec, "kind", None) or "builtin"),
            model_path=model_path,
            max_model_len=getattr(spec, "max_model_len", None),
            block_size=getattr(spec, "block_size", None),
            num_blocks=getattr(spec, "num_blocks", None),
            max_num_seqs=getattr(spec, "max_num_seqs", None),
            max_num_batched_tokens=getattr(spec, "max_num_batched_tokens", None),
            dtype=str(getattr(spec, "dtype", None) or "auto"),
            device=str(getattr(spec, "device", None) or "auto"),
            model_source=str(raw_path),
        )
