"""Structured outputs over xgrammar: compiled grammars (cached) and per-request token guides."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from typing import Any

import torch
import xgrammar as xgr

from gpu_nodes.openai.engine_port import StructuredOutput
from gpu_nodes.openai.exceptions import InvalidRequest

# Any JSON object, written compactly: a tiny or random model would otherwise be free to emit
# whitespace forever, and "json_object" promises an object, not any JSON value.
_ANY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": True}

# xgrammar prefixes errors with "[time] /path/file.cc:line: "; clients need only the reason.
_XGRAMMAR_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*", re.MULTILINE)
# Compact separators: fewer tokens per object, and what OpenAI's structured outputs look like.
_COMPACT = (",", ":")


class XGrammarGuide:
    """The built-in engine's ``TokenGuide`` over one ``xgrammar.GrammarMatcher``."""

    def __init__(self, matcher: xgr.GrammarMatcher) -> None:
        self._matcher = matcher

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        self._matcher.fill_next_token_bitmask(bitmask, row)

    def accept(self, token_id: int) -> bool:
        return bool(self._matcher.accept_token(token_id))

    def is_terminated(self) -> bool:
        return bool(self._matcher.is_terminated())


class GrammarFactory:
    """One per engine: the tokenizer's xgrammar view, a compiler, and an LRU of grammars."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        stop_token_ids: list[int] | None = None,
        cache_size: int = 64,
    ) -> None:
        self.tokenizer_info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
        )
        # max_threads=1: compilation shares 2 cores with serving; grammars are cached anyway.
        self._compiler = xgr.GrammarCompiler(self.tokenizer_info, max_threads=1)
        self._cache: OrderedDict[str, xgr.CompiledGrammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def compile(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        key = spec.cache_key()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        compiled = self._compile_uncached(spec)
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def guide(self, spec: StructuredOutput) -> XGrammarGuide:
        return XGrammarGuide(xgr.GrammarMatcher(self.compile(spec)))

    def _compile_uncached(self, spec: StructuredOutput) -> xgr.CompiledGrammar:
        if spec.kind == "json_object":
            return self._compiler.compile_json_schema(
                json.dumps(_ANY_OBJECT_SCHEMA),
                any_whitespace=False,
                separators=_COMPACT,
                strict_mode=False,
            )
        if spec.schema is None:
            raise InvalidRequest("A JSON schema is required.", param=spec.param)
        try:
            return self._compiler.compile_json_schema(
                json.dumps(spec.schema), any_whitespace=False, separators=_COMPACT, strict_mode=True
            )
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError subclasses
            reason = _XGRAMMAR_LOG_PREFIX.sub("", str(exc)).strip()
            raise InvalidRequest(
                f"The JSON schema in '{spec.param}' cannot be used: {reason}", param=spec.param
            ) from None
